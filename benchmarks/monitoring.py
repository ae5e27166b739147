"""What the monitoring costs: the request path with and without it, one client's scrape, the monitor's memory.

    flock /tmp/foobar-bench.lock .venv/bin/python benchmarks/monitoring.py [--seconds 10] [--runs 3]

1. The full path's CPU per request with the monitoring at a 1 s interval vs without monitoring, in the
   same run: the seed topology twice (once as shipped but scraping every second, once with the four
   monitoring services removed), started one after the other in temporary state folders, each loaded
   with wrk (keep-alive TLS to firewall-1, 16 connections) for `--seconds`; every hop's own CPU time
   (user + system, from the process) is read before and after.  Reported per request: the path's hops
   (everything but the monitoring processes), and the monitoring processes apart.  `--runs` pairs,
   alternating which goes first; the median and range of the path's overhead.
2. One client's CPU per scrape: the monitored stack's mon-web-01 process, CPU time over the load
   divided by the scrapes it answered (its own request counter).
3. The monitor's memory for one hour of every series at 5 s: every series the three clients expose
   (their real pages, read through the firewalls from the monitor's address), 720 samples each, fed
   into the monitor's storage in a fresh process; resident memory growth and the storage's estimate.

Target figures (issue 7): path overhead within 3 %, a client's scrape under 5 ms of CPU, the monitor
under 100 MB for an hour of everything.  The results go to benchmarks/results/monitoring-*.json.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from foobar_ref import topology  # noqa: E402
from foobar_ref.observe.metrics import parse_exposition  # noqa: E402

CLI = [sys.executable, "-m", "foobar_ref"]
MONITORING_KINDS = ("monitor-client", "monitor")
RESULTS = Path(__file__).resolve().parent / "results"
HOUR_SAMPLES = 720  # one hour at 5 s


def write_topologies(folder: Path) -> tuple[Path, Path]:
    """The seed scraping every second, and the seed without its monitoring services."""
    for source in topology.default_path().parent.iterdir():
        if source.is_file():
            shutil.copy(source, folder / source.name)
    seed = (folder / "seed.toml").read_text()
    monitored = re.sub(r"(?m)^(\s*scrape_interval_s\s*=\s*)\d+", r"\g<1>1", seed)
    monitored = re.sub(r"(?m)^(\s*evaluation_interval_s\s*=\s*)\d+", r"\g<1>1", monitored)
    monitored = re.sub(r"(?m)^(\s*scrape_timeout_s\s*=\s*)\d+", r"\g<1>1", monitored)
    (folder / "monitored.toml").write_text(monitored)
    blocks = re.split(r"(?m)^(?=\s*\[)", seed)  # every table, one block each
    kept = [
        b for b in blocks
        if not re.search(r'kind\s*=\s*"(monitor-client|monitor)"', b) and "[hosts.services.monitor]" not in b
    ]  # fmt: skip
    (folder / "unmonitored.toml").write_text("".join(kept))
    return folder / "monitored.toml", folder / "unmonitored.toml"


def up(topo: Path, state: Path) -> dict:
    subprocess.run([*CLI, "up", "--detach", "--topology", str(topo), "--state", str(state)], check=True,
                   capture_output=True, timeout=300)  # fmt: skip
    done = subprocess.run([*CLI, "status", "--json", "--state", str(state)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def down(state: Path) -> None:
    subprocess.run([*CLI, "down", "--state", str(state)], capture_output=True, timeout=120)


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    out = {}
    for name, pid in pids.items():
        try:
            times = psutil.Process(pid).cpu_times()
            out[name] = times.user + times.system + times.children_user + times.children_system
        except psutil.Error:
            out[name] = 0.0
    return out


def wrk(seconds: float, connections: int) -> int:
    """Keep-alive TLS requests to the site through firewall-1; the number answered."""
    done = subprocess.run(
        ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds:g}s", "-H", "Host: www.foobar.com",
         "https://127.0.1.1/"],
        capture_output=True, text=True, timeout=seconds + 60,
    )  # fmt: skip
    match = re.search(r"(\d+) requests in", done.stdout)
    if done.returncode != 0 or match is None:
        raise SystemExit(f"wrk failed: {done.stdout}\n{done.stderr}")
    return int(match.group(1))


def admin_requests(state: Path, hop: str) -> float:
    from foobar_ref.runtime.admin import admin_socket_path, read_metrics

    samples = parse_exposition(read_metrics(admin_socket_path(state, hop)))
    return sum(v for (name, labels), v in samples.items() if name == "foobar_requests_total")


def load_one(topo: Path, seconds: float, connections: int) -> dict:
    state = Path(tempfile.mkdtemp(prefix="foobar-bench-mon-")) / "state"
    info = up(topo, state)
    try:
        time.sleep(3)  # the first scrapes and the caches warm
        pids = {h["name"]: h["pid"] for h in info["hops"]}
        monitored = "mon-web-01" in pids
        scrapes_before = admin_requests(state, "mon-web-01") if monitored else 0.0
        before = cpu_seconds(pids)
        requests = wrk(seconds, connections)
        after = cpu_seconds(pids)
        scrapes = (admin_requests(state, "mon-web-01") - scrapes_before) if monitored else 0.0
        used = {name: after[name] - before[name] for name in pids}
        roles = {h["name"]: h["role"] for h in info["hops"]}
        path = sum(v for n, v in used.items() if roles[n] not in MONITORING_KINDS)
        watching = sum(v for n, v in used.items() if roles[n] in MONITORING_KINDS)
        row = {
            "monitored": monitored,
            "requests": requests,
            "path_cpu_us_per_request": round(path / max(requests, 1) * 1e6, 1),
            "monitoring_cpu_us_per_request": round(watching / max(requests, 1) * 1e6, 1),
            "per_hop_cpu_s": {n: round(v, 3) for n, v in used.items()},
        }
        if monitored:
            row["client_cpu_ms_per_scrape"] = round(used["mon-web-01"] / max(scrapes, 1) * 1e3, 2)
            row["client_scrapes"] = scrapes
            row["pages"] = pages(info)
        return row
    finally:
        down(state)


def pages(info: dict) -> list[str]:
    """Every client's page, read through its firewall from the monitor's address."""
    import socket

    topo = topology.load(info["topology"])
    source = topo.host_of("monitor").address
    found = []
    for service in topo.services_of_kind("monitor-client"):
        with socket.create_connection(topo.reach(service.name, "metrics"), 5, (source, 0)) as sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        found.append(data.partition(b"\r\n\r\n")[2].decode())
    return found


def monitor_memory(page_texts: list[str]) -> dict:
    """An hour of every series at 5 s in the monitor's storage, in a fresh process."""
    series = []
    for index, text in enumerate(page_texts):
        for (name, labels), value in parse_exposition(text).items():
            extra = (("host", f"h{index}"), ("instance", f"i{index}"), ("job", "monitor-client"))
            series.append((tuple(sorted((("__name__", name), *labels, *extra))), value))
    script = f"""
import json, sys, psutil
from foobar_ref.monitor.tsdb import Storage
series = json.loads(sys.stdin.read())
proc = psutil.Process()
before = proc.memory_info().rss
storage = Storage(retention_s=7200, max_bytes=1 << 30)
labels = [tuple(tuple(pair) for pair in s) for s, _ in series]
for step in range({HOUR_SAMPLES}):
    t = 1_700_000_000_000 + step * 5000
    for i, (lab, (_, value)) in enumerate(zip(labels, series)):
        storage.append(lab, t, value + step)
print(json.dumps({{"series": storage.series_count(), "samples": storage.sample_count(),
                  "estimate_mb": storage.memory_bytes() / 2**20,
                  "rss_growth_mb": (proc.memory_info().rss - before) / 2**20,
                  "rss_mb": proc.memory_info().rss / 2**20}}))
"""
    done = subprocess.run([sys.executable, "-c", script], input=json.dumps(series), capture_output=True, text=True,
                          timeout=600, check=True)  # fmt: skip
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    if not 0 < args.seconds <= 120 or not 0 < args.runs <= 10 or not 0 < args.connections <= 256:
        parser.error("--seconds in (0, 120], --runs in (0, 10], --connections in (0, 256]")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: make bench-tools")
    folder = Path(tempfile.mkdtemp(prefix="foobar-bench-topo-"))
    monitored, unmonitored = write_topologies(folder)
    pairs = []
    for run in range(args.runs):
        order = [monitored, unmonitored] if run % 2 == 0 else [unmonitored, monitored]
        rows = {str(t): load_one(t, args.seconds, args.connections) for t in order}
        pair = (rows[str(monitored)], rows[str(unmonitored)])
        overhead = pair[0]["path_cpu_us_per_request"] / pair[1]["path_cpu_us_per_request"] - 1
        print(f"run {run + 1}: path {pair[0]['path_cpu_us_per_request']} us/req monitored vs "
              f"{pair[1]['path_cpu_us_per_request']} without ({overhead:+.1%}); monitoring processes "
              f"{pair[0]['monitoring_cpu_us_per_request']} us/req; mon-web-01 "
              f"{pair[0]['client_cpu_ms_per_scrape']} ms/scrape", flush=True)  # fmt: skip
        pairs.append((pair, overhead))
    overheads = [o for _, o in pairs]
    scrape_ms = [p[0]["client_cpu_ms_per_scrape"] for p, _ in pairs]
    memory = monitor_memory(pairs[-1][0][0]["pages"])
    summary = {
        "path_overhead_median": statistics.median(overheads),
        "path_overhead_range": [min(overheads), max(overheads)],
        "client_cpu_ms_per_scrape_median": statistics.median(scrape_ms),
        "client_cpu_ms_per_scrape_range": [min(scrape_ms), max(scrape_ms)],
        "monitor_memory_one_hour": memory,
        "load_average": psutil.getloadavg(),
    }
    print(json.dumps(summary, indent=2))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"monitoring-{time.strftime('%Y%m%d-%H%M%S')}.json"
    for pair, _ in pairs:
        pair[0].pop("pages", None)
    out.write_text(json.dumps({"summary": summary, "runs": [p for p, _ in pairs]}, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
