"""Joining one request's events from hand-written hop logs: which lines are picked, and the spans made of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from foobar_ref.trace.assemble import assemble, parse_kernel_line, rule_text
from foobar_ref.trace.logs import parse_lines, read_log
from foobar_ref.trace.model import CIPHERTEXT, DNS_QUERY, PLAINTEXT, TLS_TERMINATED, ClientFacts, Layout
from foobar_ref.trace.render import render

T0 = 1_700_000_000.0  # the client's start, on the wall clock
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT = "127.9.0.10"
LB_PUBLIC = "127.9.1.1"

LAYOUT = Layout(
    resolver="dns",
    dns_servers={"127.9.3.10": "dns-root", "127.9.3.11": "dns-com", "127.9.3.12": "dns-foobar"},
    entry_firewall="firewall-1",
    balancer="lb-01",
    balancer_source=LB_PUBLIC,
    backend_firewalls={"web-01": "firewall-2", "web-02": "firewall-3"},
    stores={"web-01": "store-01", "web-02": "store-02"},
)


def facts(**changes: Any) -> ClientFacts:
    base: dict[str, Any] = dict(
        started=T0,
        total_s=0.030,
        response_s=0.010,
        source_ip=CLIENT,
        tcp_local=f"{CLIENT}:40001",
        tcp_remote=f"{LB_PUBLIC}:443",
        connect_s=0.001,
        tls=True,
        handshake_s=0.004,
        method="GET",
        target="/",
        status=200,
        trace_id=TRACE,
        served_by="web-02",
        request_bytes=0,
        response_bytes=900,
        url="https://www.foobar.com/",
        dns_query_id=4242,
        dns_rtt_s=0.006,
        dns_server="127.9.3.1:53",
        dns_addresses=(LB_PUBLIC,),
    )
    base.update(changes)
    return ClientFacts(**base)


def at(ms: float) -> float:
    return round(T0 + ms / 1000, 6)


def kernel(hop: str, src: str, dst: str, rule: str, action: str = "accept") -> str:
    (sip, spt), (dip, dpt) = src.split(":"), dst.split(":")
    return (
        f"{hop} {action}: SRC={sip} DST={dip} PROTO=TCP SPT={spt} DPT={dpt} ACTION={action} "
        f'RULE={rule} log prefix "{hop} {action}: " {action}'
    )


def decision(hop: str, ms: float, conn: int, src: str, dst: str, rule: str) -> dict[str, Any]:
    return {"ts": at(ms), "hop": hop, "event": "decision", "conn": conn, "line": kernel(hop, src, dst, rule)}


def iterated_dns() -> list[dict[str, Any]]:
    upstream = {"event": "upstream", "hop": "dns", "client_id": 4242, "name": "www.foobar.com.", "type": "A"}
    return [
        {**upstream, "ts": at(1.1), "server": "127.9.3.10", "zone": ".", "id": 11, "rcode": "NOERROR", "rtt_ms": 1.0},
        {
            **upstream,
            "ts": at(2.1),
            "server": "127.9.3.11",
            "zone": "com.",
            "id": 12,
            "rcode": "NOERROR",
            "rtt_ms": 0.9,
        },
        {
            **upstream,
            "ts": at(3.0),
            "server": "127.9.3.12",
            "zone": "foobar.com.",
            "id": 13,
            "rcode": "NOERROR",
            "rtt_ms": 0.8,
            "aa": True,
        },
        # another client's query with the same id, long before: not this request
        {
            "ts": at(-60_000),
            "hop": "dns",
            "event": "query",
            "client": f"{CLIENT}:5000",
            "id": 4242,
            "rcode": "NXDOMAIN",
        },
        {
            "ts": at(3.2),
            "hop": "dns",
            "event": "query",
            "client": f"{CLIENT}:53001",
            "id": 4242,
            "rcode": "NOERROR",
            "duration_ms": 3.0,
            "cache": "miss",
            "upstream": 3,
        },
    ]


def whole_path(lb_extra: dict[str, Any] | None = None, fw3: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    upstream = f"{LB_PUBLIC}:51000->127.9.2.2:80"
    lb_line = {
        "ts": at(29.0),
        "hop": "lb-01",
        "event": "request",
        "method": "GET",
        "target": "/",
        "backend": "web-02",
        "attempts": 1,
        "status": 200,
        "duration_ms": 8.0,
        "trace_id": TRACE,
        "tls": "TLSv1.3",
        "bytes_in": 0,
        "bytes_out": 1100,
        "upstream": upstream,
        "upstream_fresh": True,
    }
    lb_line.update(lb_extra or {})
    http80 = "tcp dport 80 ip saddr @lb-01"
    return {
        "dns": iterated_dns(),
        "dns-root": [
            {"ts": at(0.6), "event": "query", "id": 11, "detail": "referral to com."},
            {"ts": at(0.7), "event": "query", "id": 99, "detail": "referral to net."},  # another resolution
        ],
        "dns-com": [{"ts": at(1.8), "event": "query", "id": 12, "detail": "referral to foobar.com."}],
        "dns-foobar": [{"ts": at(2.9), "event": "query", "id": 13}],
        "firewall-1": [
            decision("firewall-1", 5.0, 7, f"{CLIENT}:40001", f"{LB_PUBLIC}:443", "tcp dport 443"),
            decision("firewall-1", 5.5, 8, f"{CLIENT}:40002", f"{LB_PUBLIC}:443", "tcp dport 443"),  # someone else
        ],
        "lb-01": [{"ts": at(2.0), "event": "started"}, lb_line],
        "firewall-3": fw3
        if fw3 is not None
        else [
            decision("firewall-3", 21.5, 3, f"{LB_PUBLIC}:50999", "127.9.2.2:80", http80),  # another connection
            decision("firewall-3", 21.6, 4, f"{LB_PUBLIC}:51000", "127.9.2.2:80", http80),
        ],
        "web-02": [
            {"ts": at(20.0), "event": "request", "trace_id": "someone-else", "status": 200, "duration_ms": 1.0},
            {
                "ts": at(27.0),
                "event": "request",
                "trace_id": TRACE,
                "request_id": TRACE,
                "method": "GET",
                "target": "/",
                "status": 200,
                "duration_ms": 4.0,
                "bytes_in": 0,
                "bytes_out": 1000,
                "store": None,
            },
        ],
    }


def rows(trace: Any) -> list[tuple[str, str, str]]:
    return [(s.hop, s.saw, s.decision) for s in trace.spans]


def test_a_get_is_joined_hop_by_hop_in_path_order() -> None:
    trace = assemble(facts(), LAYOUT, whole_path())
    assert rows(trace) == [
        ("client", "plaintext HTTP, sent as TLS", "GET / -> 200 from web-02"),
        ("connect", "-", f"to {LB_PUBLIC}:443 from {CLIENT}:40001"),
        ("TLS", CIPHERTEXT, "handshake"),
        ("HTTP", PLAINTEXT, "request sent -> whole response read"),
        ("dns", DNS_QUERY, f"NOERROR, asked root, com, foobar.com -> {LB_PUBLIC}"),
        ("dns-root", DNS_QUERY, "zone . at 127.9.3.10: NOERROR, referral to com."),
        ("dns-com", DNS_QUERY, "zone com. at 127.9.3.11: NOERROR, referral to foobar.com."),
        ("dns-foobar", DNS_QUERY, "zone foobar.com. at 127.9.3.12: NOERROR, answer (authoritative)"),
        ("firewall-1", CIPHERTEXT, "accept by rule 'tcp dport 443 accept'"),
        ("lb-01", TLS_TERMINATED, "round-robin to web-02, 200"),
        ("firewall-3", PLAINTEXT, "accept by rule 'tcp dport 80 ip saddr @lb-01 accept'"),
        ("web-02", PLAINTEXT, "200 for GET /"),
    ]
    assert trace.missing == ()
    assert trace.trace_id == TRACE


def test_times_are_on_the_clients_axis_and_start_at_ts_minus_duration() -> None:
    spans = {s.hop: s for s in assemble(facts(), LAYOUT, whole_path()).spans}
    assert round(spans["dns"].start_s * 1000, 3) == 0.2 and round(spans["dns"].duration_s * 1000, 3) == 3.0
    assert round(spans["dns-root"].start_s * 1000, 3) == 0.1 and spans["dns-root"].depth == 1
    assert round(spans["lb-01"].start_s * 1000, 3) == 21.0 and round(spans["lb-01"].duration_s * 1000, 3) == 8.0
    assert round(spans["web-02"].start_s * 1000, 3) == 23.0
    assert (spans["lb-01"].bytes_in, spans["lb-01"].bytes_out) == (0, 1100)
    assert round(spans["HTTP"].start_s * 1000, 3) == 20.0  # total 30 ms - response 10 ms
    # connected when firewall-1 accepted (5 ms): connect took 1 ms before it, the 4 ms handshake after it
    steps = [(s.hop, round(s.start_s * 1000, 3), s.depth, s.bytes_in, s.estimated) for s in spans.values()]
    assert [step for step in steps if step[0] in ("connect", "TLS", "HTTP")] == [
        ("connect", 4.0, 1, None, True),
        ("TLS", 5.0, 1, None, True),
        ("HTTP", 20.0, 1, None, False),
    ]
    # firewalls log no timing: firewall-1 from its decision to the client's end, firewall-3 to the web's answer
    assert spans["firewall-1"].estimated and round(spans["firewall-1"].start_s * 1000, 3) == 5.0
    assert round(spans["firewall-1"].duration_s * 1000, 3) == 25.0
    assert spans["firewall-3"].estimated and round(spans["firewall-3"].start_s * 1000, 3) == 21.6
    assert round((spans["firewall-3"].start_s + spans["firewall-3"].duration_s) * 1000, 3) == 27.0
    assert not spans["lb-01"].estimated


def test_a_closed_line_gives_the_firewall_real_end_and_bytes() -> None:
    logs = whole_path()
    logs["firewall-1"].append(
        {"ts": at(31.0), "event": "closed", "conn": 7, "bytes_in": 2100, "bytes_out": 5200, "reason": "reset"}
    )
    span = next(s for s in assemble(facts(), LAYOUT, logs).spans if s.hop == "firewall-1")
    assert (span.bytes_in, span.bytes_out, span.estimated) == (2100, 5200, False)
    assert round(span.duration_s * 1000, 3) == 26.0


def test_a_post_includes_the_store_and_what_it_wrote_to() -> None:
    logs = whole_path(lb_extra={"method": "POST", "target": "/api/messages", "status": 201})
    web = logs["web-02"][-1]
    web.update(method="POST", target="/api/messages", status=201, store="store-02")
    logs["store-02"] = [
        {
            "ts": at(26.0),
            "event": "request",
            "trace_id": TRACE,
            "method": "POST",
            "path": "/messages",
            "status": 201,
            "duration_ms": 2.0,
            "bytes_in": 17,
            "bytes_out": 80,
            "database": "db-01",
        }
    ]
    trace = assemble(facts(method="POST", target="/api/messages", status=201), LAYOUT, logs)
    assert [s.hop for s in trace.spans if s.depth == 0][-3:] == ["firewall-3", "web-02", "store-02"]
    assert trace.spans[-1].decision == "201 for POST /messages, wrote to db-01"
    assert trace.spans[-2].decision == "201 for POST /api/messages, asked store-02"


def test_a_missing_store_line_is_reported_not_invented() -> None:
    logs = whole_path()
    logs["web-02"][-1]["store"] = "store-02"
    trace = assemble(facts(), LAYOUT, logs)
    assert trace.missing == ("store-02",)
    assert "store-02" not in [s.hop for s in trace.spans]


def test_a_kept_alive_upstream_connection_starts_with_this_request() -> None:
    old = decision("firewall-3", -1500.0, 2, f"{LB_PUBLIC}:51000", "127.9.2.2:80", "tcp dport 80 ip saddr @lb-01")
    logs = whole_path(lb_extra={"upstream_fresh": False}, fw3=[old])
    span = next(s for s in assemble(facts(), LAYOUT, logs).spans if s.hop == "firewall-3")
    assert round(span.start_s * 1000, 3) == 21.0  # the balancer's start, not the old decision's
    assert "kept-alive connection, accepted 1.5 s before this request" in span.note


def test_without_the_upstream_field_the_backend_firewall_is_joined_by_time() -> None:
    logs = whole_path(lb_extra={"upstream": None, "upstream_fresh": None})
    span = next(s for s in assemble(facts(), LAYOUT, logs).spans if s.hop == "firewall-3")
    assert span.note.startswith("joined by time")
    assert round(span.start_s * 1000, 3) == 21.6  # the latest connection from the balancer


def test_the_client_tuple_picks_firewall_1s_line_among_others() -> None:
    logs = whole_path()
    logs["firewall-1"] = logs["firewall-1"][1:]  # only the other client's connection is left
    trace = assemble(facts(), LAYOUT, logs)
    assert "firewall-1" not in [s.hop for s in trace.spans]
    assert trace.missing == ("firewall-1",)
    connect = next(s for s in trace.spans if s.hop == "connect")  # placed back to back before the request
    assert round(connect.start_s * 1000, 3) == 15.0 and "back to back" in connect.note


def test_a_cached_answer_says_so_and_has_no_upstream_steps() -> None:
    logs = whole_path()
    hit = {"ts": at(0.4), "event": "query", "client": f"{CLIENT}:53001", "id": 4242, "rcode": "NOERROR", "cache": "hit"}
    logs["dns"] = [hit]
    trace = assemble(facts(), LAYOUT, logs)
    dns = [s for s in trace.spans if s.hop.startswith("dns")]
    assert [(s.hop, s.decision, s.duration_s) for s in dns] == [("dns", f"NOERROR from cache -> {LB_PUBLIC}", 0.0)]
    assert any("cache" in note for note in trace.notes)


def test_no_balancer_line_stops_the_walk_there() -> None:
    logs = whole_path()
    logs["lb-01"] = []
    trace = assemble(facts(), LAYOUT, logs)
    assert trace.missing == ("lb-01",)
    assert [s.hop for s in trace.spans][-1] == "firewall-1"


def test_kernel_lines_and_rule_texts() -> None:
    line = kernel("firewall-2", "127.9.1.1:5000", "127.9.2.1:80", "tcp dport 80 ip saddr @lb-01")
    assert parse_kernel_line(line) == {
        "src": "127.9.1.1",
        "dst": "127.9.2.1",
        "proto": "TCP",
        "spt": "5000",
        "dpt": "80",
        "action": "accept",
        "rule": 'tcp dport 80 ip saddr @lb-01 log prefix "firewall-2 accept: " accept',
    }
    assert parse_kernel_line("started") is None
    assert rule_text('tcp dport 443 log prefix "a \\" b" accept') == "tcp dport 443 accept"
    assert rule_text("ip saddr @client log reject") == "ip saddr @client reject"
    assert rule_text("policy") == "policy"


def test_render_draws_one_row_per_span_on_one_axis() -> None:
    trace = assemble(facts(), LAYOUT, whole_path())
    text = render(trace, bar_width=30)
    lines = text.splitlines()
    assert lines[0] == f"trace {TRACE}  https://www.foobar.com/"
    body = lines[2 : 2 + len(trace.spans)]
    assert [line.split()[0] if not line.startswith(" ") else line.split()[1] for line in body] == [
        "client",
        "connect",
        "TLS",
        "HTTP",
        "dns",
        "dns-root",
        "dns-com",
        "dns-foobar",
        "firewall-1",
        "lb-01",
        "firewall-3",
        "web-02",
    ]
    bars = [line[line.index("|") + 1 : line.index("|", line.index("|") + 1)] for line in body]
    assert all(len(bar) == 30 for bar in bars)
    assert bars[0] == "█" * 30  # the client spans the whole axis
    assert "▒" in bars[8] and "█" not in bars[8]  # firewall-1 is estimated
    assert bars[9].index("█") > bars[4].index("█")  # lb-01 starts after dns


def test_logs_skip_what_is_not_a_json_object(tmp_path: Path) -> None:
    assert parse_lines('READY hop=x listen=a\n{"ts": 1, "event": "a"}\n{broken\n[1]\n') == [{"ts": 1, "event": "a"}]
    log = tmp_path / "lb-01.log"
    log.write_text("".join(f'{{"n": {i}}}\n' for i in range(100)))
    tail = read_log(log, tail_bytes=50)
    assert tail and tail[-1] == {"n": 99} and len(tail) < 10  # the cut first line is dropped, not misread
    assert read_log(tmp_path / "missing.log") == []
