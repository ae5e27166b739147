"""zone.py: the shipped zone loads; a broken zone is refused naming file and line."""

from __future__ import annotations

from pathlib import Path

import pytest
from dnslib import QTYPE

from foobar_ref.dns import zone

SHIPPED_ZONE = Path(__file__).resolve().parents[2] / "foobar_ref" / "topologies" / "foobar.com.zone"
HEAD = "$ORIGIN example.test.\n$TTL 300\n@ IN SOA ns1 admin ( 1 3600 600\n  86400 60 )\n@ IN NS ns1\n"
# HEAD is lines 1-5; a case's first extra line is line 6.


def test_shipped_zone_loads() -> None:
    loaded = zone.load(SHIPPED_ZONE)
    assert str(loaded.origin) == "foobar.com."
    assert loaded.negative_ttl_s == 60
    www = loaded.rrset(zone.key(loaded.origin.add("www")), QTYPE.A)
    assert [str(rr.rdata) for rr in www] == ["127.0.1.1"]
    assert sorted(QTYPE[rr.rtype] for rr in loaded.at(zone.key(loaded.origin))) == ["A", "MX", "NS", "SOA", "TXT"]


def test_owner_inherited_and_names_case_insensitive() -> None:
    loaded = zone.parse(HEAD + "WWW IN A 192.0.2.1\n\tIN A 192.0.2.2 ; comment\nx.y IN A 192.0.2.3\n")
    assert len(loaded.rrset((b"www", b"example", b"test"), QTYPE.A)) == 2
    assert loaded.exists((b"y", b"example", b"test"))  # empty non-terminal
    assert not loaded.exists((b"z", b"example", b"test"))
    assert loaded.contains((b"z", b"example", b"test")) and not loaded.contains((b"example", b"org"))


BROKEN = [
    ("www IN AAA 192.0.2.1\n", 6, "unknown record type 'AAA'"),
    ("www IN A 300.1.1.1\n", 6, "not an IPv4 address: '300.1.1.1'"),
    ("www IN A 192.0.2\n", 6, "not an IPv4 address"),
    ("www IN A\n", 6, "A record has no data"),
    ("ok IN A 192.0.2.1\nwww IN A 192.0.2.1 192.0.2.2\n", 7, "A record needs 1 rdata field(s), found 2"),
    ("www IN MX mail\n", 6, "MX record needs 2 rdata field(s)"),
    ("\n\n; just a comment\nwww IN CNAME a\nwww IN A 192.0.2.1\n", 9, "has a CNAME and other data"),
    ("www.example.org. IN A 192.0.2.1\n", 6, "outside the zone example.test."),
    ("@ IN SOA ns1 admin 2 3600 600 86400 60\n", 6, "second SOA record (the first is on line 3)"),
    ("www IN A ( 192.0.2.1\n", 6, "'(' is never closed"),
    ("www IN A 192.0.2.1 )\n", 6, "')' without a matching '('"),
    ('www IN TXT "unterminated\n', 6, "unterminated quoted string"),
    ("$INCLUDE other.zone\n", 6, "unsupported directive $INCLUDE"),
    ("$TTL soon\n", 6, "$TTL: not a time value: 'soon'"),
    ("$ORIGIN relative\n", 6, "$ORIGIN must be an absolute name"),
    ("www CH A 192.0.2.1\n", 6, "class CH is not served"),
    ("www 99999999999 IN A 192.0.2.1\n", 6, "TTL out of range"),
    (f"{'a' * 64} IN A 192.0.2.1\n", 6, "longer than 63 octets"),
]


@pytest.mark.parametrize(("extra", "line", "what"), BROKEN, ids=[b[2] for b in BROKEN])
def test_broken_zone_names_line(extra: str, line: int, what: str) -> None:
    with pytest.raises(zone.ZoneError) as caught:
        zone.parse(HEAD + extra, source="broken.zone")
    assert caught.value.line == line
    assert str(caught.value).startswith(f"broken.zone:{line}: ")
    assert what in caught.value.what


def test_no_soa() -> None:
    with pytest.raises(zone.ZoneError, match=r"^z:1: no SOA record"):
        zone.parse("$ORIGIN example.test.\nwww 60 IN A 192.0.2.1\n", source="z")


def test_first_record_without_owner() -> None:
    with pytest.raises(zone.ZoneError, match=r"^z:2: record without an owner name"):
        zone.parse("$ORIGIN example.test.\n   IN A 192.0.2.1\n", source="z")


def test_load_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.zone"
    path.write_text(SHIPPED_ZONE.read_text() + "www IN A 1.2.3.4.5\n")
    with pytest.raises(zone.ZoneError) as caught:
        zone.load(path)
    line = len(SHIPPED_ZONE.read_text().splitlines()) + 1
    assert str(caught.value) == f"{path}:{line}: not an IPv4 address: '1.2.3.4.5'"


def test_load_missing_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(zone.ZoneError, match=r"nope.zone:0: cannot read"):
        zone.load(tmp_path / "nope.zone")
    binary = tmp_path / "binary.zone"
    binary.write_bytes(b"$ORIGIN example.test.\n\n\xff\xfe\n")
    with pytest.raises(zone.ZoneError, match=r"binary.zone:3: not UTF-8 text"):
        zone.load(binary)


def test_origin_argument_for_files_without_origin(tmp_path: Path) -> None:
    path = tmp_path / "plain.zone"
    path.write_text("@ 60 IN SOA ns1 admin 1 2 3 4 5\nwww 60 IN A 192.0.2.9\n")
    loaded = zone.load(path, origin="example.test.")
    assert str(loaded.origin) == "example.test."
    assert loaded.exists((b"www", b"example", b"test"))
