"""The monitoring half of the design: a monitoring client on every server host, one monitoring service.

Processes
---------
- `python -m foobar_ref.monitor.agent --hop mon-web-01 ...` (role `monitor-client`): the data
  collector of one host.  `GET /metrics` on the host's inner address, port 9100, reachable only
  through the host's firewall from the monitor host.  What it exposes is listed below.
- `python -m foobar_ref.monitor --hop monitor ...` (role `monitor`): scrapes every client on an
  interval, stores the samples, evaluates the alert rules (`alerts.yml`), notifies, and serves the
  dashboard and a Prometheus-compatible API on 127.0.4.1:9090.

The metric catalogue (the contract between hops, clients, rules and the dashboard)
---------------------------------------------------------------------------------
Every series a client exposes about a hop carries `hop="<name>"`.  The service adds `job`,
`instance` (the address it scraped, e.g. `127.0.2.1:9100`) and `host` (the topology host).

Host, with node_exporter's names, types and labels (on one machine: the machine's figures):
  node_cpu_seconds_total{cpu,mode}  node_load1 node_load5 node_load15
  node_memory_MemTotal_bytes  node_memory_MemAvailable_bytes
  node_network_receive_bytes_total{device}  node_network_transmit_bytes_total{device}
  node_filesystem_avail_bytes{device,fstype,mountpoint}  node_filesystem_size_bytes{...}

Per hop process, read by the client (psutil), for every hop on its host:
  foobar_process_cpu_seconds_total{hop}  foobar_process_resident_memory_bytes{hop}
  foobar_process_open_fds{hop}  foobar_process_threads{hop}  foobar_process_start_time_seconds{hop}
  foobar_hop_up{hop}                     1 when the hop's process runs and its admin socket answered

Each hop's own metrics, read from its admin socket (`<state>/run/<hop>.admin.sock`):
  all hops      foobar_requests_total{hop,outcome}  foobar_request_seconds{hop} (histogram)
  HTTP hops     foobar_http_requests_total{hop,method,code}        user requests (not /health)
  (lb, web,     foobar_http_health_checks_total{hop,code}           GET /health, counted apart
   store)       foobar_http_request_duration_seconds{hop} (histogram, from the request's first byte)
                foobar_http_requests_in_flight{hop}  foobar_http_request_bytes_total{hop}
                foobar_http_response_bytes_total{hop}
  balancer      foobar_balancer_backend_up{hop,backend}  (1 up, 0 down)
                foobar_balancer_upstream_requests_total{hop,backend,status}
                foobar_balancer_backend_failures_total{hop,backend,failure}
                foobar_balancer_retries_total{hop,backend}
  firewall      foobar_firewall_connections_total{hop,action,rule}  decisions (accept, reject, drop)
                foobar_firewall_rule_connections_total{hop,handle,rule}  per-rule counters
                foobar_firewall_rule_bytes_total{hop,handle,rule,direction}
                foobar_firewall_bytes_total{hop,direction}  foobar_firewall_conntrack_entries{hop,state}
  store         foobar_store_queries_total{hop,kind,database,outcome}
                foobar_store_query_duration_seconds{hop,kind} (histogram)

The database of the host, with mysqld_exporter's names, `hop` = the MariaDB instance:
  mysql_up  mysql_global_status_queries  mysql_global_status_threads_connected
  mysql_slave_status_seconds_behind_master  mysql_slave_status_slave_io_running
  mysql_slave_status_slave_sql_running

QPS the log way (the design's "number of requests the web server processed"):
  foobar_access_log_requests_total{hop,code}       user requests counted from the access log
  foobar_access_log_health_checks_total{hop,code}  /health requests, apart
"""
