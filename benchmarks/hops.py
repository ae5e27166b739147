"""QPS, latency and CPU per request for the full path and for each hop alone.

    python benchmarks/hops.py [--seconds 5] [--clients 16] [--state DIR] [--json FILE]

Uses the running stack of --state (or starts one in a temporary folder and stops it after).
Each scenario sends load for a fixed time from a fixed number of closed-model clients, and reads
every hop's own CPU time (user + system, from process accounting) before and after: on two cores
the Python load generator often saturates before the server does, so CPU per request is the
figure to compare, not QPS alone.  The anchor, run in the same session, is a bare trio loop that
answers every request with fixed bytes and parses nothing: each hop's CPU per request is also
given as a multiple of the anchor's.  The load generator is pinned to one core and the hop under
test to the other.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import trio
from dnslib import DNSRecord

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import Result, dns_client, http_client, run_closed  # noqa: E402

from foobar_ref import topology  # noqa: E402

CLI = [sys.executable, "-m", "foobar_ref"]
ANCHOR = Path(__file__).resolve().parent / "anchor_server.py"
ANCHOR_ADDRESS = ("127.0.9.1", 8099)


@dataclass(frozen=True)
class Scenario:
    name: str
    target_hop: str  # whose CPU per request is the headline
    make: object  # the client factory
    note: str


def scenarios(topo: topology.Topology, ca_file: Path) -> list[Scenario]:
    client_ip = topo.client_host().address
    lb_source = topo.source_for("lb-01")
    web_source = topo.source_for("web-01")
    tls = ssl.create_default_context(cafile=str(ca_file))
    site = topo.site_names[0]
    query = DNSRecord.question(site, "A").pack()
    return [
        Scenario(
            "anchor (bare trio loop)",
            "anchor",
            http_client(ANCHOR_ADDRESS, client_ip, "/", "anchor"),
            "fixed bytes, no parsing",
        ),
        Scenario(
            "full path GET /",
            "lb-01",
            http_client(topo.reach("lb-01", "https"), client_ip, "/", site, tls=tls),
            "client -> firewall-1 -> lb-01 (TLS) -> firewall-2/3 -> web-01/02",
        ),
        Scenario("dns A www", "dns", dns_client(topo.resolver, client_ip, query), "UDP, authoritative answer"),
        Scenario(
            "firewall-2 pass-through",
            "firewall-2",
            http_client(topo.reach("web-01", "http"), lb_source, "/health", site),
            "lb-01's address -> firewall-2 -> web-01 /health",
        ),
        Scenario(
            "lb-01 alone (TLS)",
            "lb-01",
            http_client(
                topo.listen("lb-01", "https"),
                lb_source,
                "/health",
                site,
                tls=tls,
                server_hostname=site,
                proxy_line=bool(topo.firewall_of("lb-01") and topo.firewall_of("lb-01").sends_proxy_line(443)),
            ),
            "TLS straight to lb-01 (PROXY line as firewall-1 sends it) -> web /health",
        ),
        Scenario(
            "web-01 alone",
            "web-01",
            http_client(topo.listen("web-01", "http"), web_source, "/health", site),
            "plain HTTP straight to web-01 /health",
        ),
        Scenario(
            "store-01 alone",
            "store-01",
            http_client(topo.listen("store-01", "http"), web_source, "/messages?limit=1", "store-01"),
            "GET /messages?limit=1, one SELECT on db-01",
        ),
    ]


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    out = {}
    for name, pid in pids.items():
        try:
            times = psutil.Process(pid).cpu_times()
            out[name] = times.user + times.system
        except psutil.Error:
            out[name] = float("nan")
    return out


def pin(pid: int, cores: list[int]) -> list[int] | None:
    try:
        proc = psutil.Process(pid)
        before = proc.cpu_affinity()
        proc.cpu_affinity(cores)
        return before
    except (psutil.Error, AttributeError, OSError):
        return None


def run_scenario(scenario: Scenario, pids: dict[str, int], clients: int, seconds: float) -> dict:
    cores = sorted(os.sched_getaffinity(0))
    restore = pin(pids[scenario.target_hop], cores[:1]) if len(cores) > 1 else None
    before = cpu_seconds(pids)
    result: Result = trio.run(run_closed, scenario.name, scenario.make, clients, seconds)
    after = cpu_seconds(pids)
    if restore is not None:
        pin(pids[scenario.target_hop], restore)
    row = result.summary() | {"target_hop": scenario.target_hop, "note": scenario.note, "clients": clients}
    count = max(result.count, 1)
    row["cpu_us_per_request"] = {
        name: round((after[name] - before[name]) / count * 1e6, 1)
        for name in pids
        if after[name] - before[name] > 0.005
    }
    return row


def ensure_stack(state: Path) -> tuple[dict, Path | None]:
    """The running stack's status, starting one in a temporary folder if none runs."""
    done = subprocess.run([*CLI, "status", "--json", "--state", str(state)], capture_output=True, text=True)
    info = json.loads(done.stdout) if done.returncode == 0 else {"hops": []}
    if info["hops"] and all(h["up"] for h in info["hops"]):
        return info, None
    temp = Path(tempfile.mkdtemp(prefix="foobar-bench-")) / "state"
    print(f"starting a stack in {temp} ...", flush=True)
    subprocess.run([*CLI, "up", "--detach", "--state", str(temp)], check=True, capture_output=True, timeout=300)
    done = subprocess.run([*CLI, "status", "--json", "--state", str(temp)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout), temp


def print_table(rows: list[dict], anchor_cpu: float) -> None:
    print(
        f"\n{'scenario':<26} {'req':>7} {'err':>4} {'QPS':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'hop':>11} {'CPU us/req':>10} {'x anchor':>8}"
    )
    for row in rows:
        hop_cpu = row["cpu_us_per_request"].get(row["target_hop"], float("nan"))
        ratio = hop_cpu / anchor_cpu if anchor_cpu else float("nan")
        print(
            f"{row['name']:<26} {row['requests']:>7} {row['errors']:>4} {row['qps']:>8.0f} {row['p50_ms']:>8.2f} "
            f"{row['p99_ms']:>8.2f} {row['target_hop']:>11} {hop_cpu:>10.1f} {ratio:>8.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--state", type=Path, default=Path(".foobar-ref"))
    parser.add_argument("--json", type=Path, default=None, help="write results here (default benchmarks/results/)")
    args = parser.parse_args()
    if not 0 < args.seconds <= 120 or not 0 < args.clients <= 256:
        parser.error("--seconds must be in (0, 120] and --clients in (0, 256]")
    info, temp = ensure_stack(args.state)
    anchor = subprocess.Popen(
        [sys.executable, str(ANCHOR), *ANCHOR_ADDRESS[0:1], str(ANCHOR_ADDRESS[1])], stdout=subprocess.PIPE, text=True
    )
    try:
        anchor.stdout.readline()  # READY
        topo = topology.load(info["topology"])
        pids = {h["name"]: h["pid"] for h in info["hops"]} | {"anchor": anchor.pid}
        rows = []
        for scenario in scenarios(topo, Path(info["ca"])):
            print(f"running {scenario.name} for {args.seconds:g} s with {args.clients} clients ...", flush=True)
            rows.append(run_scenario(scenario, pids, args.clients, args.seconds))
    finally:
        anchor.terminate()
        anchor.wait(10)
        if temp is not None:
            subprocess.run([*CLI, "down", "--state", str(temp)], capture_output=True, timeout=120)
    anchor_cpu = rows[0]["cpu_us_per_request"].get("anchor", 0.0)
    print_table(rows, anchor_cpu)
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "cores": os.cpu_count(),
        "seconds": args.seconds,
        "clients": args.clients,
        "anchor_cpu_us_per_request": anchor_cpu,
        "scenarios": rows,
    }
    out = args.json or Path(__file__).resolve().parent / "results" / f"hops-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
