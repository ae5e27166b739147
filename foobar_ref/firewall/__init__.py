"""The firewall hops: TCP proxies on a guarded host's public address, deciding each connection by rule."""
