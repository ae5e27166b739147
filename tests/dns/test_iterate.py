"""iterate.py driven by hand against in-process authorities (core.Authority over the shipped zones): no sockets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from dnslib import QTYPE, RR, DNSLabel, DNSRecord

from foobar_ref.dns import zone
from foobar_ref.dns.cache import Cache
from foobar_ref.dns.core import Authority, Transport
from foobar_ref.dns.iterate import Ask, Config, Event, Got, NoAnswer, Outcome, Resolver

TOPOLOGIES = Path(__file__).resolve().parents[2] / "foobar_ref" / "topologies"
ROOT_IP, COM_IP, FOOBAR_IP = "127.0.3.10", "127.0.3.11", "127.0.3.12"
EXTRA = {
    "com.zone": "c2 IN CNAME c3.foobar.com.\nsilent IN NS ns.silent.com.\nns.silent IN A 127.0.3.99\n",
    "foobar.com.zone": "c1 IN CNAME c2.com.\nc3 IN CNAME www\nshort 2 IN A 127.0.1.2\n"
    + "big IN TXT "
    + " ".join(f'"{i:02d}{"x" * 200}"' for i in range(8))
    + "\n",
}

Answerer = Callable[[Ask], Event | None]


def _authorities() -> dict[str, Authority]:
    def load(name: str) -> Authority:
        text = (TOPOLOGIES / name).read_text() + EXTRA.get(name, "")
        return Authority(zone.parse(text, zone.default_origin(name), name))

    return {ROOT_IP: load("root.zone"), COM_IP: load("com.zone"), FOOBAR_IP: load("foobar.com.zone")}


@pytest.fixture
def resolver() -> Resolver:
    hints = zone.load_hints(TOPOLOGIES / "root.hints")
    ids = iter(range(1, 10_000))
    return Resolver(
        Cache(), hints, Config(upstream_timeout_s=0.5, tries=2, resolution_timeout_s=3.0), lambda: next(ids)
    )


def serve(authorities: dict[str, Authority], now: float = 0.0) -> Answerer:
    def answer(ask: Ask) -> Event | None:
        authority = authorities.get(ask.server)
        if authority is None:
            return None
        wire = authority.respond(ask.wire, Transport.TCP if ask.tcp else Transport.UDP).wire
        assert wire is not None
        record, why = ask.check(wire, (ask.server, 53), 53)
        assert record is not None, why
        return Got(record, now, 0.001)

    return answer


def run(resolver: Resolver, name: str, qtype: str, answer: Answerer, now: float = 0.0) -> tuple[Outcome, list[Ask]]:
    """Drive one resolution; a None from `answer` is a timeout that takes the ask's whole timeout."""
    asks: list[Ask] = []
    clock = now
    walk = resolver.resolve(DNSLabel(name), getattr(QTYPE, qtype), now)
    event: Event | None = None
    while True:
        try:
            ask = walk.send(event)  # type: ignore[arg-type]
        except StopIteration as stop:
            return stop.value, asks
        asks.append(ask)
        event = answer(ask)
        if event is None:
            clock += ask.timeout_s
            event = NoAnswer(clock, "timeout")


def test_walks_root_com_foobar_then_answers_from_cache(resolver: Resolver) -> None:
    outcome, asks = run(resolver, "www.foobar.com", "A", serve(_authorities()))
    assert [str(rr.rdata) for rr in outcome.answers] == ["127.0.1.1"] and outcome.rcode == 0
    assert [(a.server, str(a.zone)) for a in asks] == [(ROOT_IP, "."), (COM_IP, "com."), (FOOBAR_IP, "foobar.com.")]
    assert all(not DNSRecord.parse(a.wire).header.rd for a in asks)  # iterative questions
    assert len({a.query_id for a in asks}) == 3
    again, asked = run(resolver, "www.foobar.com", "A", serve(_authorities()), now=10.0)
    assert asked == [] and again.answers[0].ttl == 290 and again.upstream_queries == 0
    _, asked = run(resolver, "foobar.com", "MX", serve(_authorities()), now=10.0)
    assert [a.server for a in asked] == [FOOBAR_IP]  # the delegation is cached too


def test_ttl_expiry_means_asking_again(resolver: Resolver) -> None:
    run(resolver, "short.foobar.com", "A", serve(_authorities()))
    assert run(resolver, "short.foobar.com", "A", serve(_authorities()), now=1.5)[1] == []
    _, asked = run(resolver, "short.foobar.com", "A", serve(_authorities()), now=2.0)
    assert [a.server for a in asked] == [FOOBAR_IP]


def test_negative_answers_cached_by_soa_minimum(resolver: Resolver) -> None:
    outcome, _ = run(resolver, "nope.foobar.com", "A", serve(_authorities()))
    assert outcome.rcode == 3 and outcome.authority[0].rtype == QTYPE.SOA and outcome.authority[0].ttl == 60
    cached, asked = run(resolver, "nope.foobar.com", "TXT", serve(_authorities()), now=59.0)
    assert asked == [] and cached.rcode == 3 and cached.authority[0].ttl == 1
    assert run(resolver, "nope.foobar.com", "A", serve(_authorities()), now=60.0)[1] != []
    nodata, _ = run(resolver, "www.foobar.com", "AAAA", serve(_authorities()))
    assert nodata.rcode == 0 and nodata.answers == [] and nodata.authority[0].rtype == QTYPE.SOA


def test_cname_chain_across_zones(resolver: Resolver) -> None:
    outcome, asks = run(resolver, "c1.foobar.com", "A", serve(_authorities()))
    assert [(str(rr.rname), QTYPE[rr.rtype]) for rr in outcome.answers] == [
        ("c1.foobar.com.", "CNAME"),
        ("c2.com.", "CNAME"),
        ("c3.foobar.com.", "CNAME"),
        ("www.foobar.com.", "A"),
    ]
    assert [a.server for a in asks].count(COM_IP) >= 1


def test_truncated_answer_is_asked_again_over_tcp(resolver: Resolver) -> None:
    outcome, asks = run(resolver, "big.foobar.com", "TXT", serve(_authorities()))
    assert [(a.server, a.tcp) for a in asks][-2:] == [(FOOBAR_IP, False), (FOOBAR_IP, True)]
    assert len(outcome.answers) == 1 and len(outcome.answers[0].rdata.data) == 8


def test_silent_authority_gives_servfail_within_the_budget(resolver: Resolver) -> None:
    outcome, asks = run(resolver, "www.silent.com", "A", serve(_authorities()))
    assert outcome.rcode == 2 and "silent.com" in outcome.detail
    silent = [a for a in asks if a.server == "127.0.3.99"]
    assert len(silent) == 2 and sum(a.timeout_s for a in silent) <= 3.0


def test_out_of_bailiwick_records_are_ignored(resolver: Resolver) -> None:
    honest = serve(_authorities())

    def poisoning(ask: Ask) -> Event | None:
        event = honest(ask)
        if ask.server == COM_IP and isinstance(event, Got):
            event.record.add_answer(*RR.fromZone("www.example.org. 3600 IN A 6.6.6.6"))
            event.record.add_ar(*RR.fromZone("a.root-servers.foobar-ref. 3600 IN A 6.6.6.6"))
        return event

    run(resolver, "www.foobar.com", "A", poisoning)
    assert resolver.cache.get(zone.key(DNSLabel("www.example.org")), QTYPE.A, 1.0) is None
    assert resolver.cache.get(zone.key(DNSLabel("a.root-servers.foobar-ref")), QTYPE.A, 1.0) is None


def test_referral_that_does_not_go_down_fails(resolver: Resolver) -> None:
    honest = serve(_authorities())

    def lame(ask: Ask) -> Event | None:
        if ask.server != COM_IP:
            return honest(ask)
        reply = DNSRecord.parse(ask.wire).reply()
        reply.header.aa = 0
        reply.add_auth(*RR.fromZone(". 3600 IN NS a.root-servers.foobar-ref."))  # "ask the root": upwards
        return Got(reply, 0.0, 0.001)

    outcome, asks = run(resolver, "www.foobar.com", "A", lame)
    assert outcome.rcode == 2 and len(asks) < 6
