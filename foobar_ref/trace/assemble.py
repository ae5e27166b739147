"""Join one request's events from every hop's log into spans on the client's time axis. Pure.

Theory of operation
-------------------
Each hop writes JSON lines (`runtime.trio_shell.log`); a line's `ts` is the
wall-clock time it was written, and a hop that times its work also logs
`duration_ms`, so it started at `ts - duration_ms`.  All hops run on one
machine, so one clock serves as the time axis, with 0 at the client's start.

The keys that pick this request's events out of each log (ARCHITECTURE.md):

- resolver: the client's address and the DNS query id (`query` line); its
  questions upstream carry the same id as `client_id` (`upstream` lines), and
  each authoritative server logs the resolver's own query id for it;
- entry firewall: it cannot read headers (TLS), so the client's TCP 4-tuple:
  the `decision` line's SRC:SPT -> DST:DPT is the client's local -> remote;
- balancer, web, store: the trace id, which the balancer answers with as
  X-Request-Id and passes on in `traceparent`;
- backend firewall: the balancer's upstream connection "local->remote" from its
  request line, matched against SRC:SPT -> DST:DPT.  A kept-alive connection
  was accepted at an earlier request; the span then starts with this request.

A firewall logs no timing for a normal connection, only its decision, so its
span is drawn from the decision (or the request) to the end of what it carried,
and marked as estimated in `note`.  Events are looked for within `SLACK_S` of
the request, so an old connection with a recycled port is not picked up.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from foobar_ref.trace.model import (
    CIPHERTEXT,
    DNS_QUERY,
    PLAINTEXT,
    TLS_TERMINATED,
    ClientFacts,
    Layout,
    Span,
    Trace,
)

Record = Mapping[str, Any]
Records = Mapping[str, Sequence[Record]]
SLACK_S = 2.0
JITTER_S = 0.05  # lines are written a moment after the work they describe
KEPT_ALIVE_S = 30.0  # how far back a kept-alive upstream connection's decision may lie
_KERNEL = re.compile(
    r"SRC=(?P<src>\S+) DST=(?P<dst>\S+) PROTO=(?P<proto>\S+) SPT=(?P<spt>\d+) DPT=(?P<dpt>\d+) "
    r"ACTION=(?P<action>\S+) RULE=(?P<rule>.*)$"
)
_LOG_CLAUSE = re.compile(r'\s+log(\s+prefix\s+"(?:[^"\\]|\\.)*")?(?=\s|$)')


def assemble(facts: ClientFacts, layout: Layout, records: Records) -> Trace:
    """Every span of one request, in path order, and the hops whose events are missing."""
    missing: list[str] = []
    notes: list[str] = []
    entry = None
    if layout.entry_firewall is not None:
        entry = _entry_firewall(facts, layout.entry_firewall, records.get(layout.entry_firewall, ()))
        missing += [] if entry else [layout.entry_firewall]
    spans = _client_spans(facts, entry.start_s if entry else None)
    if facts.dns_query_id is not None and layout.resolver is not None:
        dns = _dns_spans(facts, layout, records)
        spans += dns
        if not dns:
            missing.insert(0, layout.resolver)
        elif "from cache" in dns[0].decision:
            notes.append(
                "the resolver answered from its cache; after the TTL (or a restart) a trace shows its iteration"
            )
    spans += [entry] if entry else []
    lb = _http_record(facts, records.get(layout.balancer, ()))
    if lb is None:
        return Trace(facts.trace_id, facts.url, tuple(spans), (*missing, layout.balancer), tuple(notes))
    spans.append(_balancer_span(facts, layout.balancer, lb, records.get(layout.balancer, ())))
    backend = lb.get("backend") or facts.served_by
    if backend is None:
        return Trace(facts.trace_id, facts.url, tuple(spans), tuple(missing), tuple(notes))
    rest, lost = _behind_balancer(facts, layout, records, lb, str(backend))
    return Trace(facts.trace_id, facts.url, tuple(spans + rest), tuple(missing + lost), tuple(notes))


def _behind_balancer(
    facts: ClientFacts, layout: Layout, records: Records, lb: Record, backend: str
) -> tuple[list[Span], list[str]]:
    spans: list[Span] = []
    missing: list[str] = []
    web = _http_record(facts, records.get(backend, ()))
    web_span = _web_span(facts, backend, web) if web is not None else None
    wants_store = "/api/messages" in facts.target if web is None or "store" not in web else bool(web["store"])
    firewall = layout.backend_firewalls.get(backend)
    if firewall is not None:
        lb_start, lb_end = _started(lb), _ts(lb)
        relay_end = (web_span.start_s + web_span.duration_s + facts.started) if web_span else lb_end
        found = _backend_firewall(facts, layout, firewall, records.get(firewall, ()), lb, (lb_start, relay_end))
        spans += [found] if found else []
        missing += [] if found else [firewall]
    if web_span is None:
        return spans, [*missing, backend]
    spans.append(web_span)
    store = layout.stores.get(backend)
    if store is not None and wants_store:
        found_store = _http_record(facts, records.get(store, ()))
        spans += [_store_span(facts, store, found_store)] if found_store else []
        missing += [] if found_store else [store]
    return spans, missing


# --- the client ------------------------------------------------------------------


def _client_spans(facts: ClientFacts, accepted_s: float | None) -> list[Span]:
    """The client's whole request, then its steps: connect, TLS handshake, request -> response.

    The client times each step but logs no start: only the request's send time
    is exact (the end minus the response time).  The connection is complete when
    the entry firewall accepts it (`accepted_s`), so connect ends there and the
    handshake follows; without that line the steps are placed back to back.
    """
    sent = facts.sent_at - facts.started
    whole = Span(
        "client",
        0.0,
        facts.total_s,
        "plaintext HTTP, sent as TLS" if facts.tls else PLAINTEXT,
        f"{facts.method} {facts.target} -> {facts.status} from {facts.served_by or '?'}",
        facts.request_bytes,
        facts.response_bytes,
    )
    handshake_start = sent - facts.handshake_s
    placed = "the client times its steps, not their starts: placed back to back before the request"
    if accepted_s is not None and accepted_s < handshake_start:
        handshake_start = accepted_s
        placed = "placed: connect ends when the entry firewall accepted, the handshake follows"
    connect_start = handshake_start - facts.connect_s
    decision = f"to {facts.tcp_remote} from {facts.tcp_local}"
    steps = [
        whole,
        Span("connect", connect_start, facts.connect_s, "-", decision, depth=1, note=placed, estimated=True),
    ]
    if facts.tls:
        steps.append(Span("TLS", handshake_start, facts.handshake_s, CIPHERTEXT, "handshake", depth=1, estimated=True))
    exchange = Span("HTTP", sent, facts.response_s, PLAINTEXT, "request sent -> whole response read", depth=1)
    return [*steps, exchange]


# --- DNS ---------------------------------------------------------------------------


def _dns_spans(facts: ClientFacts, layout: Layout, records: Records) -> list[Span]:
    assert layout.resolver is not None
    lo, hi = facts.started - SLACK_S, facts.ended + SLACK_S
    query = _last(
        records.get(layout.resolver, ()),
        lambda r: (
            r.get("event") == "query"
            and r.get("id") == facts.dns_query_id
            and _ip(r.get("client")) == facts.source_ip
            and lo <= _ts(r) <= hi
        ),
    )
    if query is None:
        return []
    end = _ts(query)
    start = _started(query)
    asks = [
        r
        for r in records.get(layout.resolver, ())
        if r.get("event") == "upstream"
        and r.get("client_id") == facts.dns_query_id
        and start - JITTER_S <= _ts(r) <= end + JITTER_S
    ]
    rcode = str(query.get("rcode", "?"))
    answer = f" -> {', '.join(facts.dns_addresses)}" if facts.dns_addresses else ""
    if asks:
        decision = f"{rcode}, asked {', '.join(_zone_label(a.get('zone')) for a in asks)}{answer}"
    else:
        decision = f"{rcode} from cache{answer}"
    note = "" if "duration_ms" in query else "a wire-cache hit logs no time: it takes microseconds"
    head = Span(layout.resolver, start - facts.started, end - start, DNS_QUERY, decision, note=note)
    return [head] + [_ask_span(facts, layout, records, a) for a in asks]


def _ask_span(facts: ClientFacts, layout: Layout, records: Records, ask: Record) -> Span:
    rtt_s = float(ask.get("rtt_ms") or 0) / 1000
    end = _ts(ask)
    server = str(ask.get("server", "?"))
    hop = layout.dns_servers.get(server, str(ask.get("server_name") or server))
    served = _last(
        records.get(hop, ()),
        lambda r: r.get("event") == "query" and r.get("id") == ask.get("id") and end - rtt_s - JITTER_S <= _ts(r),
    )
    rcode = str(ask.get("rcode", "?"))
    if served is not None and served.get("detail"):
        outcome = f"{rcode}, {served['detail']}"
    else:
        outcome = f"{rcode}, answer" + (" (authoritative)" if ask.get("aa") else "")
    decision = f"zone {ask.get('zone', '?')} at {server}: {outcome}"
    return Span(hop, end - rtt_s - facts.started, rtt_s, DNS_QUERY, decision, depth=1)


def _zone_label(zone: object) -> str:
    text = str(zone or "?")
    return "root" if text == "." else text.rstrip(".")


# --- firewalls -------------------------------------------------------------------------


def parse_kernel_line(line: str) -> dict[str, str] | None:
    """SRC= DST= PROTO= SPT= DPT= ACTION= RULE= of a firewall's decision line, or None."""
    match = _KERNEL.search(line)
    return match.groupdict() if match else None


def rule_text(rule: str) -> str:
    """The rule as a learner reads it: without its `log` clause."""
    return _LOG_CLAUSE.sub("", rule).strip()


def _decisions(records: Sequence[Record], pair: tuple[str, str] | None, src_ip: str | None = None) -> list[Record]:
    """Decision lines for the connection `pair` (local, remote), or from `src_ip` when pair is None."""
    found: list[Record] = []
    for record in records:
        if record.get("event") != "decision":
            continue
        fields = parse_kernel_line(str(record.get("line", "")))
        if fields is None:
            continue
        local, remote = f"{fields['src']}:{fields['spt']}", f"{fields['dst']}:{fields['dpt']}"
        if (pair is not None and (local, remote) == pair) or (pair is None and fields["src"] == src_ip):
            found.append({**record, **fields})
    return found


def _closed(records: Sequence[Record], decision: Record) -> Record | None:
    return next(
        (
            r
            for r in records
            if r.get("event") == "closed" and r.get("conn") == decision.get("conn") and _ts(r) >= _ts(decision)
        ),
        None,
    )


def _verdict(decision: Record) -> str:
    return f"{decision['action']} by rule '{rule_text(str(decision['rule']))}'"


def _entry_firewall(facts: ClientFacts, hop: str, records: Sequence[Record]) -> Span | None:
    lo, hi = facts.started - SLACK_S, facts.ended + SLACK_S
    chosen = [d for d in _decisions(records, (facts.tcp_local, facts.tcp_remote)) if lo <= _ts(d) <= hi]
    if not chosen:
        return None
    decision = chosen[-1]
    closed = _closed(records, decision)
    saw = CIPHERTEXT if facts.tls else PLAINTEXT
    start = _ts(decision) - facts.started
    if closed is not None:
        duration = max(_ts(closed) - facts.started - start, 0.0)
        bytes_in, bytes_out = _int_or_none(closed.get("bytes_in")), _int_or_none(closed.get("bytes_out"))
        return Span(hop, start, duration, saw, _verdict(decision), bytes_in, bytes_out)
    note = "a normal close is not logged: shown until the client's last byte"
    duration = max(facts.total_s - start, 0.0)
    return Span(hop, start, duration, saw, _verdict(decision), note=note, estimated=True)


def _backend_firewall(
    facts: ClientFacts,
    layout: Layout,
    hop: str,
    records: Sequence[Record],
    lb: Record,
    window: tuple[float, float],
) -> Span | None:
    lb_start, relay_end = window
    upstream = str(lb.get("upstream") or "")
    local, arrow, remote = upstream.partition("->")
    pair = (local, remote) if arrow else None
    earliest = lb_start - (KEPT_ALIVE_S if lb.get("upstream_fresh") is not True else SLACK_S)
    chosen = [
        d for d in _decisions(records, pair, layout.balancer_source) if earliest <= _ts(d) <= relay_end + JITTER_S
    ]
    if not chosen:
        return None
    decision = chosen[-1]
    accepted = _ts(decision)
    notes = [] if pair else ["joined by time: the balancer's log names no upstream connection"]
    if accepted < lb_start - JITTER_S:
        notes.append(f"kept-alive connection, accepted {lb_start - accepted:.1f} s before this request")
    start = max(accepted, lb_start)
    notes.append("relay time is not logged: shown until the web server answered")
    duration = max(relay_end - start, 0.0)
    verdict = _verdict(decision)
    return Span(hop, start - facts.started, duration, PLAINTEXT, verdict, note="; ".join(notes), estimated=True)


# --- HTTP hops ---------------------------------------------------------------------------


def _http_record(facts: ClientFacts, records: Sequence[Record]) -> Record | None:
    """This request's `request` line: the one that carries its trace id."""
    if not facts.trace_id:
        return None
    lo, hi = facts.started - SLACK_S, facts.ended + SLACK_S
    return _last(
        records,
        lambda r: (
            r.get("event") == "request"
            and facts.trace_id in (r.get("trace_id"), r.get("request_id"))
            and lo <= _ts(r) <= hi
        ),
    )


def _balancer_span(facts: ClientFacts, hop: str, lb: Record, records: Sequence[Record]) -> Span:
    status, backend, attempts = lb.get("status"), lb.get("backend"), int(lb.get("attempts") or 0)
    if backend is None:
        decision = f"answered itself: {status}"
    else:
        decision = f"round-robin to {backend}" + (f" (try {attempts})" if attempts > 1 else "") + f", {status}"
    failed = [
        f"{r.get('backend')} failed: {r.get('failure')}"
        for r in records
        if r.get("event") == "upstream_failed" and r.get("trace_id") == facts.trace_id
    ]
    decision += "".join(f"; {f}" for f in failed)
    saw = TLS_TERMINATED if lb.get("tls") or (facts.tls and "tls" not in lb) else PLAINTEXT
    return _timed_span(facts, hop, lb, saw, decision)


def _web_span(facts: ClientFacts, hop: str, web: Record) -> Span:
    decision = f"{web.get('status')} for {web.get('method')} {web.get('target')}"
    if web.get("store"):
        decision += f", asked {web['store']}"
    return _timed_span(facts, hop, web, PLAINTEXT, decision)


def _store_span(facts: ClientFacts, hop: str, store: Record) -> Span:
    decision = f"{store.get('status')} for {store.get('method')} {store.get('path')}"
    database = store.get("database")
    if database:
        decision += f", {'wrote to' if store.get('method') == 'POST' else 'read from'} {database}"
    return _timed_span(facts, hop, store, PLAINTEXT, decision)


def _timed_span(facts: ClientFacts, hop: str, record: Record, saw: str, decision: str) -> Span:
    start = _started(record)
    return Span(
        hop,
        start - facts.started,
        _ts(record) - start,
        saw,
        decision,
        _int_or_none(record.get("bytes_in")),
        _int_or_none(record.get("bytes_out")),
    )


# --- small helpers -----------------------------------------------------------------------


def _ts(record: Record) -> float:
    value = record.get("ts")
    return float(value) if isinstance(value, int | float) else 0.0


def _started(record: Record) -> float:
    """When the logged work began: the line is written at its end, after `duration_ms`."""
    duration = record.get("duration_ms")
    return _ts(record) - (float(duration) / 1000 if isinstance(duration, int | float) else 0.0)


def _ip(address: object) -> str:
    return str(address or "").rsplit(":", 1)[0]


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _last(records: Sequence[Record], wanted: Callable[[Record], bool]) -> Record | None:
    return next((r for r in reversed(records) if wanted(r)), None)
