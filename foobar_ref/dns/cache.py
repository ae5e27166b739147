"""The resolver's record cache: RRsets by (name, type), negative answers by RFC 2308. Time comes in as data.

Theory of operation
-------------------
Every entry remembers the absolute time it expires (`now + ttl`, with `now`
always passed in by the caller, so tests move time by hand).  A read returns
copies whose TTL is what is left (whole seconds, rounded down) and treats an
entry at or past its expiry as absent (and drops it).

Negative answers (RFC 2308): NXDOMAIN is kept under (name, None) and answers
every type for that name; NODATA is kept under (name, type).  Both live
min(SOA TTL, SOA minimum) seconds (§5), capped by `max_negative_ttl_s`, and
carry that SOA, whose TTL is decremented like any other, for the authority
section.  Positive TTLs are capped by `max_ttl_s`.  The cache holds at most
`max_entries`; when full, the oldest insertion goes first (expired entries are
simply found and dropped on read).
"""

from __future__ import annotations

from dataclasses import dataclass

from dnslib import QTYPE, RR

from foobar_ref.dns.zone import Key

MAX_ENTRIES = 100_000
MAX_TTL_S = 86_400
MAX_NEGATIVE_TTL_S = 3_600
NOERROR, NXDOMAIN = 0, 3


@dataclass(frozen=True)
class Positive:
    rrs: tuple[RR, ...]


@dataclass(frozen=True)
class Negative:
    rcode: int  # NXDOMAIN or NOERROR (NODATA)
    soa: RR | None


@dataclass(frozen=True)
class _Entry:
    expires_at: float
    value: Positive | Negative


class Cache:
    def __init__(
        self, max_entries: int = MAX_ENTRIES, max_ttl_s: int = MAX_TTL_S, max_negative_ttl_s: int = MAX_NEGATIVE_TTL_S
    ) -> None:
        self.max_entries = max_entries
        self.max_ttl_s = max_ttl_s
        self.max_negative_ttl_s = max_negative_ttl_s
        self._entries: dict[tuple[Key, int | None], _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def flush(self) -> None:
        self._entries.clear()

    def put_rrset(self, name: Key, rtype: int, rrs: tuple[RR, ...] | list[RR], now: float) -> None:
        """Store one RRset; it lives as long as its smallest TTL (capped); TTL 0 is not stored."""
        if not rrs:
            return
        ttl_s = min(min(rr.ttl for rr in rrs), self.max_ttl_s)
        if ttl_s > 0:
            self._store((name, rtype), _Entry(now + ttl_s, Positive(tuple(rrs))))

    def put_negative(self, name: Key, qtype: int, rcode: int, soa: RR | None, now: float) -> None:
        """NXDOMAIN (all types of `name`) or NODATA (`qtype` only); without an SOA nothing is stored (§5)."""
        if soa is None or soa.rtype != QTYPE.SOA:
            return
        ttl_s = min(soa.ttl, soa.rdata.times[-1], self.max_negative_ttl_s)
        if ttl_s <= 0:
            return
        stored_soa = RR(soa.rname, soa.rtype, soa.rclass, ttl_s, soa.rdata)
        slot: tuple[Key, int | None] = (name, None) if rcode == NXDOMAIN else (name, qtype)
        self._store(slot, _Entry(now + ttl_s, Negative(rcode, stored_soa)))

    def get(self, name: Key, rtype: int, now: float) -> Positive | Negative | None:
        """What is known about (name, rtype): NXDOMAIN first, then the RRset or NODATA; TTLs as left now."""
        for slot in ((name, None), (name, rtype)):
            entry = self._entries.get(slot)
            if entry is None:
                continue
            if now >= entry.expires_at:
                del self._entries[slot]
                continue
            return _aged(entry, now)
        return None

    def _store(self, slot: tuple[Key, int | None], entry: _Entry) -> None:
        self._entries.pop(slot, None)
        while len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]
        self._entries[slot] = entry


def _aged(entry: _Entry, now: float) -> Positive | Negative:
    left_s = int(entry.expires_at - now)
    value = entry.value
    if isinstance(value, Positive):
        return Positive(tuple(_with_ttl(rr, min(rr.ttl, left_s)) for rr in value.rrs))
    soa = _with_ttl(value.soa, left_s) if value.soa is not None else None
    return Negative(value.rcode, soa)


def _with_ttl(rr: RR, ttl_s: int) -> RR:
    return RR(rr.rname, rr.rtype, rr.rclass, max(ttl_s, 0), rr.rdata)
