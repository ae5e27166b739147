"""The monitoring client of one host (`mon-lb-01`, `mon-web-01`, ...): the design's data collector.

Theory of operation
-------------------
One trio process per server host, started by the supervisor after the hops it
watches (`python -m foobar_ref.monitor.agent --hop mon-web-01 ...`, role
`monitor-client`).  It serves `GET /metrics` on its host's inner address, port
`metrics` (9100), and accepts connections only from the host's public address:
the host's firewall relays the monitoring service's connections from there, and
its rules let only `@monitor` through.

Nothing is polled in the background: every scrape reads its sources there and
then (collector.py), each within a budget, and what misses it is marked down
instead of holding the page:

- node.py        the host, under node_exporter's names (CPU, load, memory, network,
                 the state folder's file system, boot time, clock);
- processes.py   every hop of the host (Topology.hops_on_host: its services and the
                 firewall owning its public address), pids from the supervisor's
                 stack file: CPU, memory, fds, threads, start time;
- hops.py        every hop's own page from its admin socket, merged with `hop` set;
- mariadb.py     the host's MariaDB instances, under mysqld_exporter's names;
- access_log.py  the web server's access log followed as `tail -F` does: requests
                 and health checks counted from the log, the second way to QPS.

page.py merges it all into one page (text format 0.0.4, or OpenMetrics when
asked for); server.py is the HTTP side.  The series are listed in the catalogue,
foobar_ref/monitor/__init__.py.
"""
