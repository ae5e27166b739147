"""lb-01, the site's load balancer: TLS termination and HTTP/1.1 to the web servers, at HAProxy's depth.

Layout
------
Pure (no I/O, no clock: time comes in as `now_s`):
  core.py          request and response headers, refusals, retries, the upstream idle pool
  farm.py          the backends as one farm: which backend takes a request, the queue, health, run-time changes
  servers.py       one backend: HAProxy's rise/fall health counter, admin state, slow start, load
  algorithms.py    smooth weighted round-robin, weighted leastconn
  counters.py      traffic counters per frontend and backend (sessions, rates, statuses, errors)
  stats.py         the stats model, as JSON and as an HTML page
  timers.py        HAProxy's request timers (Th/Ti/TR/Tw/Tc/Tr/Ta) and termination states
  proxy_protocol.py  the PROXY v1 line from firewall-1
With I/O:
  shell.py, upstream.py, __main__.py   the process: listeners, client connections, the upstream exchange
  health.py        active checks (trio), fed to the farm
  tls.py           the TLS context (Mozilla intermediate), resumption, reload on SIGHUP; openssl_ctl.py
  admin_routes.py  /stats, /stats.json, POST /backend/<name> on the admin socket

Workers (`workers = N` in the topology; design, the shell carries it out)
-------------------------------------------------------------------------
Processes.  The hop the supervisor starts stays one process to it (one pid,
one READY line): with N > 1 it becomes a small master that binds every
listener once (SO_REUSEPORT set), then starts N workers (`python -m
foobar_ref.balancer ... --worker I`) handing them the listening sockets
(`pass_fds`).  All workers accept from the same queue, so an idle worker takes
the next connection and a busy one takes fewer; nothing is lost when a worker
leaves, because the socket stays open in the master.  (One SO_REUSEPORT socket
per worker would spread connections by a hash of the 4-tuple instead, but
Linux resets the connections waiting in a closed socket's backlog unless
`net.ipv4.tcp_migrate_req` is set, which would make every reload drop a few.)
The master restarts a worker that dies, passes SIGTERM and SIGHUP on, and each
worker has its own admin socket (`run/lb-01.w<I>.admin.sock`).

Health.  Each worker runs its own checks and keeps its own farm, as HAProxy's
processes did with `nbproc`: N checks per backend per interval (cheap: one
small GET), and for at most one interval the workers may disagree about a
backend; passive observations make each worker quick on its own traffic.
Sharing health through the master would put IPC on the request path for
little gain.  `foobar-ref lb set` sends the change to every worker;
`foobar-ref lb stats` sums the workers' counters (sessions, totals, rates)
and shows each worker's view of a backend's state when they differ.

Round-robin order.  Per worker.  Smooth weighted round-robin is exact within
every `sum(weights)` picks of one worker, so the farm-wide split is the
weights' ratio within N x sum(weights) requests, whatever the connections'
spread; leastconn sees only its worker's requests in flight (approximate
farm-wide, exact per worker).  Limits are divided so their sum is what the
topology says: each worker gets ceil(maxconn / N) connections and
ceil(backend_maxconn / N) requests per backend, and its own queue.

Resumption.  Tickets are encrypted with the keys of one shared file
(`<state>/tls/ticket.keys`, 80 bytes, mode 0600, written by the launcher), so
any worker resumes a ticket issued by any other, and tickets survive a
certificate reload (tests/balancer/test_tls.py proves both on real processes).
The TLS 1.2 session-ID cache is per process: a client without tickets that
lands on another worker gets a full handshake (about N-1 times in N).

Graceful reload.  SIGHUP: every worker reloads its certificate into a new
context; open connections keep theirs, new handshakes use the new one.  A new
topology or new code: the master starts a new generation of workers on the
same listening sockets, waits for their READY, then sends SIGTERM to the old
ones, which stop accepting, answer their in-flight requests with
`Connection: close`, close idle keep-alive connections, and exit within the
client timeout (their open requests are never cut short before it).
"""
