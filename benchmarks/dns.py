"""The resolver against unbound: cached-answer and cold (one upstream question per query) QPS and CPU per query.

    flock /tmp/foobar-bench.lock .venv/bin/python benchmarks/dns.py [--seconds 10] [--no-unbound]

It copies the seed's topology folder to a temporary directory with the DNS hosts moved to 127.0.9.x
(resolver 127.0.9.1, root/com/foobar.com authorities 127.0.9.10-12; unbound, when installed, on
127.0.9.53 as a recursive resolver with the same root hints, so both walk the same authorities),
starts them, and drives each resolver with dnsperf (one socket, up to 100 queries in flight):

* cached: `www.foobar.com A` over and over (after one warm-up query): every answer from the cache;
* cold: distinct names `b<round>-<n>.foobar.com A`, each asked once: NXDOMAIN from the foobar.com
  authority, so every query costs the resolver one upstream exchange (root and com referrals stay
  cached, as in real life).

The resolver under test runs on core 1, dnsperf and the authorities on core 0.  CPU per query is the
resolver's own user+system time (psutil, before and after) divided by the queries completed; the
efficiency ratio is unbound's CPU per query divided by ours (1.0: as efficient as unbound).
Results go to benchmarks/results/dns-<time>.json.  Needs dnsperf (and unbound for the comparison):
see benchmarks/README-dns.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
TOPOLOGIES = ROOT / "foobar_ref" / "topologies"
SUBNET = "127.0.9"
OURS = (f"{SUBNET}.1", 53)
UNBOUND = (f"{SUBNET}.53", 53)
LOADGEN_SOURCE = f"{SUBNET}.100"
SERVER_CORE, LOADGEN_CORE = 1, 0
AUTHORITIES = ("dns-root", "dns-com", "dns-foobar")
READY_TIMEOUT_S = 15.0
COLD_NAMES = 400_000

UNBOUND_CONF = """server:
  interface: {ip}
  port: {port}
  num-threads: 1
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "{folder}"
  pidfile: "{folder}/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 0
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  do-ip6: no
  root-hints: "{folder}/root.hints"
  module-config: "iterator"
  qname-minimisation: no
  outgoing-interface: {ip}
  so-reuseport: no
  prefetch: no
  minimal-responses: yes
  msg-cache-size: 64m
  rrset-cache-size: 128m
remote-control:
  control-enable: no
"""


def copy_topology(folder: Path) -> Path:
    for source in TOPOLOGIES.iterdir():
        if source.is_file():
            text = source.read_text().replace("127.0.3.", f"{SUBNET}.").replace('"127.0.0.10"', f'"{LOADGEN_SOURCE}"')
            (folder / source.name).write_text(text)
    return folder / "seed.toml"


def start_hop(topology: Path, hop: str, core: int, *flags: str) -> subprocess.Popen[bytes]:
    log = (topology.parent / f"{hop}.log").open("wb")
    argv = [sys.executable, "-m", "foobar_ref.dns", "--topology", str(topology), "--hop", hop]
    process = subprocess.Popen([*argv, "--state", str(topology.parent / "state"), *flags], stdout=log, cwd=ROOT)
    os.sched_setaffinity(process.pid, {core})
    deadline = time.monotonic() + READY_TIMEOUT_S
    while f"READY hop={hop}" not in (topology.parent / f"{hop}.log").read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{hop} did not start; see {topology.parent / (hop + '.log')}")
        time.sleep(0.05)
    return process


def start_unbound(folder: Path) -> subprocess.Popen[bytes] | None:
    binary = shutil.which("unbound") or ("/usr/sbin/unbound" if Path("/usr/sbin/unbound").exists() else None)
    if binary is None:
        print("unbound is not installed: no comparison (see benchmarks/README-dns.md)")
        return None
    conf = folder / "unbound.conf"
    conf.write_text(UNBOUND_CONF.format(ip=UNBOUND[0], port=UNBOUND[1], folder=folder))
    check = subprocess.run([binary.replace("unbound", "unbound-checkconf"), str(conf)], capture_output=True, text=True)
    if check.returncode != 0:
        raise SystemExit(f"unbound config refused: {check.stdout}{check.stderr}")
    log = (folder / "unbound.log").open("wb")
    process = subprocess.Popen([binary, "-d", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    os.sched_setaffinity(process.pid, {SERVER_CORE})
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not _answers(UNBOUND):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"unbound did not start; see {folder / 'unbound.log'}")
        time.sleep(0.1)
    return process


def _answers(server: tuple[str, int]) -> bool:
    from foobar_ref.dns import stub

    try:
        return stub.query("www.foobar.com", "A", server, LOADGEN_SOURCE, timeout_s=0.5).addresses == ["127.0.1.1"]
    except stub.StubError:
        return False


def dnsperf(server: tuple[str, int], queries: Path, seconds: float, once: bool) -> dict[str, float]:
    argv = ["taskset", "-c", str(LOADGEN_CORE), "dnsperf", "-s", server[0], "-p", str(server[1])]
    argv += ["-a", LOADGEN_SOURCE, "-d", str(queries), "-l", str(seconds), "-c", "1", "-q", "100", "-t", "2"]
    argv += ["-n", "1"] if once else []
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
    found = {
        "completed": re.search(r"Queries completed:\s+(\d+)", out),
        "lost": re.search(r"Queries lost:\s+(\d+)", out),
        "qps": re.search(r"Queries per second:\s+([\d.]+)", out),
        "elapsed_s": re.search(r"Run time \(s\):\s+([\d.]+)", out),
    }
    if not all(found.values()):
        raise SystemExit(f"could not read dnsperf's output:\n{out}")
    return {name: float(match.group(1)) for name, match in found.items() if match}


def measure(name: str, pid: int, server: tuple[str, int], queries: Path, seconds: float, once: bool) -> dict:
    process = psutil.Process(pid)
    before = process.cpu_times()
    result = dnsperf(server, queries, seconds, once)
    after = process.cpu_times()
    cpu_s = (after.user - before.user) + (after.system - before.system)
    result["cpu_s"] = cpu_s
    result["cpu_us_per_query"] = cpu_s / result["completed"] * 1e6 if result["completed"] else float("nan")
    result["server"] = name
    return result


def query_files(folder: Path) -> dict[str, Path]:
    cached = folder / "cached.txt"
    cached.write_text("www.foobar.com A\n" * 1000)
    files = {"cached": cached}
    for who in ("ours", "unbound"):
        cold = folder / f"cold-{who}.txt"
        cold.write_text("".join(f"b{who}-{n}.foobar.com A\n" for n in range(COLD_NAMES)))
        files[f"cold-{who}"] = cold
    return files


def report(rows: list[dict]) -> None:
    print(f"{'scenario':<10} {'server':<8} {'QPS':>9} {'lost':>6} {'CPU us/q':>9}")
    for row in rows:
        cpu = row["cpu_us_per_query"]
        print(f"{row['scenario']:<10} {row['server']:<8} {row['qps']:>9.0f} {row['lost']:>6.0f} {cpu:>9.1f}")
    for scenario in ("cached", "cold"):
        pair = {r["server"]: r for r in rows if r["scenario"] == scenario}
        if {"ours", "unbound"} <= set(pair):
            ratio = pair["unbound"]["cpu_us_per_query"] / pair["ours"]["cpu_us_per_query"]
            qps = pair["ours"]["qps"] / pair["unbound"]["qps"]
            print(f"{scenario}: efficiency (unbound CPU/query / ours) {ratio:.2f}, QPS ours/unbound {qps:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--no-unbound", action="store_true")
    parser.add_argument("--no-query-log", action="store_true", help="run our resolver without its query log")
    args = parser.parse_args()
    if shutil.which("dnsperf") is None:
        raise SystemExit("dnsperf is not installed (see benchmarks/README-dns.md)")
    folder = Path(tempfile.mkdtemp(prefix="foobar-dns-bench-"))
    topology = copy_topology(folder)
    processes: list[subprocess.Popen[bytes]] = []
    rows: list[dict] = []
    try:
        processes += [start_hop(topology, hop, LOADGEN_CORE) for hop in AUTHORITIES]
        flags = ("--no-query-log",) if args.no_query_log else ()
        ours = start_hop(topology, "dns", SERVER_CORE, *flags)
        processes.append(ours)
        unbound = None if args.no_unbound else start_unbound(folder)
        processes += [unbound] if unbound else []
        files = query_files(folder)
        servers = [("ours", ours, OURS)] + ([("unbound", unbound, UNBOUND)] if unbound else [])
        for name, process, address in servers:
            assert _answers(address), f"{name} does not resolve www.foobar.com"
            rows.append(
                {"scenario": "cached", **measure(name, process.pid, address, files["cached"], args.seconds, False)}
            )
            rows.append(
                {"scenario": "cold", **measure(name, process.pid, address, files[f"cold-{name}"], args.seconds, True)}
            )
    finally:
        for process in reversed(processes):
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
    report(rows)
    out = ROOT / "benchmarks" / "results" / f"dns-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    meta = {"seconds": args.seconds, "query_log": not args.no_query_log, "cores": os.cpu_count()}
    out.write_text(json.dumps({**meta, "rows": rows}, indent=2))
    print(f"results: {out}")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
