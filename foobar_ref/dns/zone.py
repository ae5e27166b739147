"""The registrar's zone: a master-format file (RFC 1035 §5) read into an immutable look-up table.

Theory of operation
-------------------
dnslib's `ZoneParser` reads records but does not say on which line a bad one
sits, so the file is first cut into *logical records* here: physical lines are
joined while a `(` is open (outside quotes and `;` comments), and each record
remembers the line it starts on.  `$ORIGIN` and `$TTL` are handled here (they
are state, not records); every other record goes to `RR.fromZone` with the
current origin and default TTL.  A record that starts with white space has no
owner of its own and inherits the previous one, so the previous owner is
written in front of it before dnslib sees it.

Every problem is raised as `ZoneError("file:line: what")`: an unknown type, a
missing or extra rdata field, an address out of range, a record outside the
zone, a second SOA, a CNAME next to other data.  A zone that loads is therefore
one the server can answer from without surprises.

Names are compared case-insensitively (RFC 4343) through `key()`: a tuple of
lower-cased labels, most specific first, as they appear on the wire.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from dnslib import CLASS, QTYPE, RR, DNSBuffer, DNSLabel
from dnslib.dns import parse_time

MAX_ZONE_BYTES = 4 * 1024 * 1024
MAX_TTL_S = 2**31 - 1
# rdata fields for the types whose arity is fixed (dnslib ignores extra fields silently).
_ARITY = {"A": 1, "AAAA": 1, "NS": 1, "CNAME": 1, "PTR": 1, "MX": 2, "SOA": 7, "SRV": 4}
_CLASSES = ("IN", "CH", "HS")

Key = tuple[bytes, ...]


class ZoneError(Exception):
    """A zone file that cannot be served; str() is `file:line: what`."""

    def __init__(self, source: str, line: int, what: str) -> None:
        super().__init__(f"{source}:{line}: {what}")
        self.source = source
        self.line = line
        self.what = what


def key(name: DNSLabel) -> Key:
    return tuple(bytes(label).lower() for label in name.label)


@dataclass(frozen=True)
class Zone:
    """One zone's data: the apex, its SOA and the records by owner name."""

    origin: DNSLabel
    soa: RR
    records: Mapping[Key, tuple[RR, ...]]
    names: frozenset[Key]  # owners and the empty non-terminals between them and the apex
    source: str
    cuts: frozenset[Key] = frozenset()  # names below the apex that own NS records: delegations

    def delegation(self, name: Key) -> Key | None:
        """The zone cut at or above `name` (the one nearest the apex), or None if `name` is ours."""
        if not self.cuts:
            return None
        apex = len(key(self.origin))
        for depth in range(apex + 1, len(name) + 1):
            cut = name[len(name) - depth :]
            if cut in self.cuts:
                return cut
        return None

    def contains(self, name: Key) -> bool:
        """Is `name` at or below the apex (inside this zone's authority)?"""
        apex = key(self.origin)
        return len(name) >= len(apex) and name[len(name) - len(apex) :] == apex

    def exists(self, name: Key) -> bool:
        return name in self.names

    def rrset(self, name: Key, rtype: int) -> tuple[RR, ...]:
        return tuple(rr for rr in self.records.get(name, ()) if rr.rtype == rtype)

    def at(self, name: Key) -> tuple[RR, ...]:
        return self.records.get(name, ())

    @property
    def negative_ttl_s(self) -> int:
        """RFC 2308 §5: the SOA in a negative answer lives min(SOA TTL, SOA minimum)."""
        return int(min(self.soa.ttl, self.soa.rdata.times[-1]))


def default_origin(path: str | Path) -> str:
    """The origin a zone file's name suggests: `foobar.com.zone` -> `foobar.com.`, `root.zone` -> `.`."""
    stem = Path(path).name.removesuffix(".zone").removesuffix(".db").strip(".")
    return "." if stem in ("", "root") else f"{stem}."


def load(path: str | Path, origin: str = "") -> Zone:
    """Read a zone file; `origin` is the starting $ORIGIN.

    A file's own $ORIGIN wins; without one, an absolute owner on the first record (the SOA) is the
    origin; without that, `origin`, or else the one the file's name suggests (`default_origin`).
    """
    file = Path(path)
    source = str(file)
    try:
        data = file.read_bytes()
    except OSError as err:
        raise ZoneError(source, 0, f"cannot read: {err.strerror or err}") from None
    if len(data) > MAX_ZONE_BYTES:
        raise ZoneError(source, 0, f"larger than {MAX_ZONE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ZoneError(source, data[: err.start].count(b"\n") + 1, "not UTF-8 text") from None
    return parse(text, origin or default_origin(file), source)


def parse(text: str, origin: str = "", source: str = "<zone>") -> Zone:
    """Parse master-format text; raise ZoneError naming the line of the first problem."""
    return _assemble(_read_records(text, _implied_origin(text, source) or origin, source), source)


def _implied_origin(text: str, source: str) -> str | None:
    """The first record's owner when it is absolute and no $ORIGIN comes before it."""
    for _, body in _logical_records(text, source):
        tokens = _tokens(body)
        if not tokens:
            continue
        if tokens[0].upper() == "$ORIGIN" or body[:1] in (" ", "\t"):
            return None
        if tokens[0].startswith("$"):
            continue
        return tokens[0] if tokens[0].endswith(".") else None
    return None


def _read_records(text: str, origin: str, source: str) -> list[tuple[int, RR]]:
    state = _State(DNSLabel(origin), 0, None)
    records: list[tuple[int, RR]] = []
    for line, body in _logical_records(text, source):
        tokens = _tokens(body)
        if not tokens:
            continue
        if tokens[0].startswith("$"):
            _directive(state, tokens, source, line)
            continue
        rr = _record(state, body, tokens, source, line)
        state.owner = rr.rname
        records.append((line, rr))
    return records


@dataclass(frozen=True)
class Hint:
    """One root server from a hints file: its name and addresses."""

    name: DNSLabel
    addresses: tuple[str, ...]


def load_hints(path: str | Path) -> tuple[Hint, ...]:
    """Read a root hints file (NS records for `.` and the servers' A records); ZoneError names file:line."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ZoneError(str(file), 0, f"cannot read: {err}") from None
    records = _read_records(text, ".", str(file))
    servers: dict[Key, DNSLabel] = {}
    addresses: dict[Key, list[str]] = {}
    for line, rr in records:
        if rr.rtype == QTYPE.NS and not rr.rname.label:
            servers.setdefault(key(rr.rdata.label), rr.rdata.label)
        elif rr.rtype == QTYPE.A:
            addresses.setdefault(key(rr.rname), []).append(str(rr.rdata))
        else:
            raise ZoneError(str(file), line, f"hints hold NS records for '.' and A records, not {QTYPE[rr.rtype]}")
    hints = tuple(Hint(name, tuple(addresses.get(k, ()))) for k, name in servers.items())
    if not any(h.addresses for h in hints):
        raise ZoneError(str(file), 1, "no root server with an address (an NS for '.' and its A record)")
    return hints


@dataclass
class _State:
    origin: DNSLabel
    ttl_s: int
    owner: DNSLabel | None


def _directive(state: _State, tokens: list[str], source: str, line: int) -> None:
    name = tokens[0].upper()
    if name not in ("$ORIGIN", "$TTL"):
        raise ZoneError(source, line, f"unsupported directive {tokens[0]} (expected $ORIGIN or $TTL)")
    if len(tokens) != 2:
        raise ZoneError(source, line, f"{name} takes exactly one value")
    if name == "$ORIGIN":
        if not tokens[1].endswith("."):
            raise ZoneError(source, line, f"$ORIGIN must be an absolute name ending in '.', found {tokens[1]!r}")
        state.origin = _label(tokens[1], source, line)
        return
    try:
        ttl = parse_time(tokens[1])
    except (ValueError, KeyError):
        raise ZoneError(source, line, f"$TTL: not a time value: {tokens[1]!r}") from None
    state.ttl_s = _check_ttl(ttl, source, line)


def _record(state: _State, body: str, tokens: list[str], source: str, line: int) -> RR:
    continuation = body[:1] in (" ", "\t")
    if continuation:
        if state.owner is None:
            raise ZoneError(source, line, "record without an owner name (the first record must name one)")
        tokens = [str(state.owner), *tokens]
        body = f"{state.owner} {body.lstrip()}"
    rtype, rdata = _split(tokens, source, line)
    expected = _ARITY.get(rtype)
    if expected is not None and len(rdata) != expected:
        raise ZoneError(source, line, f"{rtype} record needs {expected} rdata field(s), found {len(rdata)}")
    if rtype == "A":
        _check_ipv4(rdata[0], source, line)
    try:
        parsed = RR.fromZone(body, origin=state.origin, ttl=state.ttl_s)
    except Exception as err:  # dnslib raises many kinds for bad rdata
        raise ZoneError(source, line, f"bad {rtype} record: {err}") from None
    if len(parsed) != 1:
        raise ZoneError(source, line, f"expected one record, found {len(parsed)}")
    rr = parsed[0]
    try:
        rr.pack(DNSBuffer())
    except Exception as err:
        raise ZoneError(source, line, f"{rtype} record cannot be encoded: {err}") from None
    _check_ttl(rr.ttl, source, line)
    return rr


def _split(tokens: list[str], source: str, line: int) -> tuple[str, list[str]]:
    """owner [ttl] [class] type rdata... -> (type, rdata), as dnslib's ZoneParser reads it."""
    if any(len(part) > 63 for part in tokens[0].split(".")):
        raise ZoneError(source, line, f"a label of {tokens[0]!r} is longer than 63 octets")
    rest = tokens[1:]
    if rest and rest[0].isdigit():
        _check_ttl(int(rest[0]), source, line)
        rest = rest[1:]
    if rest and rest[0].upper() in _CLASSES:
        rest = rest[1:]
    if not rest:
        raise ZoneError(source, line, "record has no type")
    rtype = rest[0]
    if not _known_type(rtype):
        raise ZoneError(source, line, f"unknown record type {rtype!r}")
    if not rest[1:]:
        raise ZoneError(source, line, f"{rtype} record has no data")
    return rtype, rest[1:]


def _known_type(rtype: str) -> bool:
    if rtype in ("ANY", "AXFR", "IXFR", "OPT"):
        return False
    try:
        getattr(QTYPE, rtype)
    except Exception:  # dnslib's Bimap raises DNSError for an unknown name
        return False
    return True


def _check_ipv4(text: str, source: str, line: int) -> None:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        raise ZoneError(source, line, f"not an IPv4 address: {text!r}") from None


def _check_ttl(ttl: int, source: str, line: int) -> int:
    if not 0 <= ttl <= MAX_TTL_S:
        raise ZoneError(source, line, f"TTL out of range (0-{MAX_TTL_S}): {ttl}")
    return ttl


def _label(text: str, source: str, line: int) -> DNSLabel:
    try:
        name = DNSLabel(text)
    except Exception as err:
        raise ZoneError(source, line, f"bad name {text!r}: {err}") from None
    if any(len(part) > 63 for part in name.label) or sum(len(part) + 1 for part in name.label) + 1 > 255:
        raise ZoneError(source, line, f"name too long: {text!r}")
    return name


def _assemble(records: list[tuple[int, RR]], source: str) -> Zone:
    soas = [(line, rr) for line, rr in records if rr.rtype == QTYPE.SOA]
    if not soas:
        raise ZoneError(source, 1, "no SOA record: a zone needs exactly one, at its apex")
    if len(soas) > 1:
        raise ZoneError(source, soas[1][0], f"second SOA record (the first is on line {soas[0][0]})")
    soa_line, soa = soas[0]
    zone = Zone(soa.rname, soa, {}, frozenset(), source)
    by_name: dict[Key, list[RR]] = {}
    first_line: dict[Key, int] = {}
    for line, rr in records:
        name = key(rr.rname)
        if not zone.contains(name):
            raise ZoneError(source, line, f"{rr.rname} is outside the zone {soa.rname} (SOA on line {soa_line})")
        if rr.rclass != CLASS.IN:
            raise ZoneError(source, line, f"class {CLASS.get(rr.rclass)} is not served (only IN)")
        _check_label_lengths(rr.rname, source, line)
        by_name.setdefault(name, []).append(rr)
        first_line.setdefault(name, line)
    for name, rrs in by_name.items():
        if any(rr.rtype == QTYPE.CNAME for rr in rrs) and len(rrs) > 1:
            raise ZoneError(source, first_line[name], f"{rrs[0].rname} has a CNAME and other data (RFC 1034 §3.6.2)")
    apex = len(key(soa.rname))
    names = {name[i:] for name in by_name for i in range(len(name) - apex + 1)}
    records_map = {name: tuple(rrs) for name, rrs in by_name.items()}
    apex_key = key(soa.rname)
    cuts = frozenset(n for n, rrs in by_name.items() if n != apex_key and any(rr.rtype == QTYPE.NS for rr in rrs))
    return Zone(soa.rname, soa, records_map, frozenset(names), source, cuts)


def _check_label_lengths(name: DNSLabel, source: str, line: int) -> None:
    if any(len(part) > 63 for part in name.label):
        raise ZoneError(source, line, f"a label of {name} is longer than 63 octets")
    if sum(len(part) + 1 for part in name.label) + 1 > 255:
        raise ZoneError(source, line, f"{name} is longer than 255 octets")


def _logical_records(text: str, source: str) -> Iterator[tuple[int, str]]:
    """Yield (first line number, text) per record, joining lines inside parentheses."""
    pending: list[str] = []
    start = 0
    depth = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        code, opened, closed, quoted = _scan(raw)
        if quoted:
            raise ZoneError(source, number, "unterminated quoted string")
        if not pending:
            start = number
        pending.append(code)
        depth += opened - closed
        if depth < 0:
            raise ZoneError(source, number, "')' without a matching '('")
        if depth == 0:
            yield start, " ".join(pending).rstrip()  # leading white space means "same owner as before"
            pending = []
    if depth > 0:
        raise ZoneError(source, start, "'(' is never closed")


def _scan(line: str) -> tuple[str, int, int, bool]:
    """Strip a `;` comment (outside quotes); count parentheses; report an open quote."""
    opened = closed = 0
    quoted = escaped = False
    for index, char in enumerate(line):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif quoted:
            continue
        elif char == ";":
            return line[:index], opened, closed, False
        elif char == "(":
            opened += 1
        elif char == ")":
            closed += 1
    return line, opened, closed, quoted


def _tokens(body: str) -> list[str]:
    """Whitespace-separated words outside quotes, parentheses removed (for checks only)."""
    words: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in body:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            current.append(char)
            escaped = True
        elif char == '"':
            quoted = not quoted
            current.append(char)
        elif not quoted and (char.isspace() or char in "()"):
            if current:
                words.append("".join(current))
                current = []
        else:
            current.append(char)
    if current:
        words.append("".join(current))
    return words
