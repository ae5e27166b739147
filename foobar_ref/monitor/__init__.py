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
  node_filesystem_avail_bytes{device,mountpoint,fstype,device_error}  node_filesystem_size_bytes{...}
  node_filesystem_free_bytes{...}       the state folder's file system only; device_error is ""
                                        (node_exporter 1.10+ writes it so; an empty label is no label
                                        once stored, so queries by {device,fstype,mountpoint} match)
  node_boot_time_seconds  node_time_seconds

Per hop process, read by the client (/proc/<pid>/stat, as the Prometheus clients' process collectors),
for every hop on its host (pids from the supervisor's stack.json):
  foobar_process_cpu_seconds_total{hop}  foobar_process_resident_memory_bytes{hop}
  foobar_process_open_fds{hop}  foobar_process_threads{hop}  foobar_process_start_time_seconds{hop}
  foobar_hop_restarts_total{hop}         restarts by the supervisor (`restarts` in stack.json)
  foobar_hop_up{hop}                     1 when the hop's process runs and its admin socket answered
                                         a whole page (a hop without one, MariaDB: its process runs)

Each hop's own metrics, read from its admin socket (`<state>/run/<hop>.admin.sock`):
  all hops      foobar_requests_total{hop,outcome}  foobar_request_seconds{hop} (histogram)
  HTTP hops     foobar_http_requests_total{hop,method,code}        user requests (not /health);
  (lb, web,                                                          method: GET HEAD POST PUT DELETE
   store)                                                            PATCH OPTIONS CONNECT TRACE or
                                                                     `other` (also: refused unread)
                foobar_http_health_checks_total{hop,code}           GET /health, counted apart
                foobar_http_request_duration_seconds{hop} (histogram, user requests, from the request's
                                                          first byte to the response sent)
                foobar_http_requests_in_flight{hop}  foobar_http_request_bytes_total{hop}
                foobar_http_response_bytes_total{hop}               (these three: all traffic)
  balancer      foobar_balancer_backend_up{hop,backend}  (1 up, 0 down: the balancer's passive health)
                foobar_balancer_upstream_requests_total{hop,backend,status}  (an HTTP code or a failure)
                foobar_balancer_backend_failures_total{hop,backend,failure}
                  failure: connect_failed no_response bad_response timeout
                foobar_balancer_retries_total{hop,backend}  requests that moved on to this backend
                                                          after another one failed
  firewall      foobar_firewall_connections_total{hop,action,rule}  decisions (accept, reject, drop)
                foobar_firewall_rule_connections_total{hop,handle,rule}  per-rule counters
                foobar_firewall_rule_bytes_total{hop,handle,rule,direction}
                foobar_firewall_bytes_total{hop,direction}  foobar_firewall_conntrack_entries{hop,state}
  store         foobar_store_queries_total{hop,kind,database,outcome}
                  kind: read write health; outcome: ok timeout unavailable error
                foobar_store_query_duration_seconds{hop,kind} (histogram, taking a connection included)

The database of the host, with mysqld_exporter's names, `hop` = the MariaDB instance:
  mysql_up  mysql_global_status_queries  mysql_global_status_threads_connected  (untyped, as there)
  mysql_global_status_{questions,threads_running,threads_created,connections,uptime,slow_queries,
    aborted_clients,aborted_connects,max_used_connections,bytes_received,bytes_sent,slave_running}
  mysql_global_status_commands_total{command}   select insert update delete commit
  mysql_global_variables_max_connections  mysql_global_variables_read_only  (gauges)
  mysql_slave_status_seconds_behind_master  mysql_slave_status_slave_io_running
  mysql_slave_status_slave_sql_running  ..._last_io_errno ..._last_sql_errno ..._last_errno
  ..._read_master_log_pos ..._exec_master_log_pos ..._relay_log_space ..._master_server_id ..._sql_delay
    {master_host,master_uuid,channel_name,connection_name}; replicas only; NULL leaves a series out

QPS the log way (the design's "number of requests the web server processed"):
  foobar_access_log_requests_total{hop,code}       user requests counted from the access log
  foobar_access_log_health_checks_total{hop,code}  /health requests, apart
  foobar_access_log_unreadable_lines_total{hop}  foobar_access_log_reopened_total{hop,reason}
    (counted since the client started; the log is <state>/logs/<web hop>.access.log, nginx
    `combined` + request time, see observe/access_log.py)

The client itself (`hop` = the client):
  foobar_agent_collect_duration_seconds{hop,source}  foobar_agent_collect_success{hop,source}
  foobar_agent_collect_errors_total{hop,source}
    source: node, processes, admin/<hop>, mariadb/<instance>, access_log/<web hop>
"""
