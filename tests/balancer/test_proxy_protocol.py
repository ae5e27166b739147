"""PROXY protocol v1: the line firewall-1 sends first, parsed strictly."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from foobar_ref.balancer.proxy_protocol import (
    MAX_LINE_BYTES,
    ProxyHeader,
    ProxyProtocolError,
    format_line,
    parse,
    split_line,
)

ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
ports = st.integers(min_value=0, max_value=65535)


def test_a_firewall_line_names_the_client() -> None:
    line, rest = split_line(b"PROXY TCP4 203.0.113.7 127.0.1.1 51234 443\r\n\x16\x03\x01")
    assert rest == b"\x16\x03\x01"
    assert parse(line) == ProxyHeader("TCP4", "203.0.113.7", "127.0.1.1", 51234, 443)


def test_unknown_keeps_the_peer_address() -> None:
    line, rest = split_line(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nGET")
    assert parse(line) == ProxyHeader("UNKNOWN") and rest == b"GET"


def test_tcp6() -> None:
    assert parse(b"PROXY TCP6 2001:db8::1 ::1 1 65535").source_ip == "2001:db8::1"


@pytest.mark.parametrize("partial", [b"", b"P", b"PROXY", b"PROXY TCP4 1.2.3.4", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r"])
def test_an_incomplete_line_asks_for_more(partial: bytes) -> None:
    assert split_line(partial) is None


@pytest.mark.parametrize(
    "data",
    [
        b"\x16\x03\x01\x02\x00",  # a TLS ClientHello sent without the line
        b"GET / HTTP/1.1\r\n",
        b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",  # bare LF
        b"PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n",  # bare CR
        b"PROXY " + b"9" * MAX_LINE_BYTES,  # no CRLF within the limit
    ],
)
def test_split_refuses_what_cannot_become_a_line(data: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        split_line(data)


@pytest.mark.parametrize(
    "line",
    [
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1",  # missing field
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3",  # extra field
        b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2",  # double space
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536",  # port out of range
        b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2",  # leading zero
        b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2",
        b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2",  # leading zero in a quad
        b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2",
        b"PROXY TCP4 ::1 5.6.7.8 1 2",  # family mismatch
        b"PROXY TCP6 1.2.3.4 ::1 1 2",
        b"PROXY TCP6 fe80::1%eth0 ::1 1 2",  # scoped address
        b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 \xd9\xa1 2",  # a non-ASCII digit
        b"PROXY ",
    ],
)
def test_parse_refuses_malformed_fields(line: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        parse(line)


@given(ipv4, ipv4, ports, ports, st.binary(max_size=64))
def test_tcp4_round_trip(src: str, dst: str, sport: int, dport: int, after: bytes) -> None:
    header = ProxyHeader("TCP4", src, dst, sport, dport)
    line, rest = split_line(format_line(header) + after)
    assert parse(line) == header and rest == after


@given(ipv6, ipv6, ports, ports)
def test_tcp6_round_trip_fits_the_limit(src: str, dst: str, sport: int, dport: int) -> None:
    wire = format_line(ProxyHeader("TCP6", src, dst, sport, dport))
    assert len(wire) <= MAX_LINE_BYTES
    found = split_line(wire)
    assert found is not None
    parsed = parse(found[0])
    assert ipaddress.ip_address(parsed.source_ip or "") == ipaddress.ip_address(src)
    assert (parsed.source_port, parsed.destination_port) == (sport, dport)


@given(st.binary(max_size=300))
def test_any_bytes_split_to_a_line_none_or_the_protocol_error(data: bytes) -> None:
    try:
        found = split_line(data)
        if found is not None:
            parse(found[0])
    except ProxyProtocolError:
        return


@given(st.binary(max_size=200))
def test_prefixed_bytes_parse_or_raise_the_protocol_error_only(tail: bytes) -> None:
    try:
        header = parse(b"PROXY " + tail)
    except ProxyProtocolError:
        return
    assert header.protocol in ("TCP4", "TCP6", "UNKNOWN")


@given(ipv4, ports, st.integers(min_value=1, max_value=20), st.binary(max_size=40))
def test_the_line_may_arrive_in_pieces(src: str, sport: int, cut: int, after: bytes) -> None:
    wire = format_line(ProxyHeader("TCP4", src, "127.0.1.1", sport, 443)) + after
    cut = min(cut, len(wire) - len(after) - 1)
    assert split_line(wire[:cut]) is None
    found = split_line(wire)
    assert found is not None and parse(found[0]).source_ip == src and found[1] == after
