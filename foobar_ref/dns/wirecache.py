"""Whole replies kept as bytes, so a repeated question is answered without parsing or packing anything.

Theory of operation
-------------------
The resolver answers a question fully (parse, check, resolve, pack) the first
time; the packed reply is then stored here under the query's bytes after the
id, lower-cased.  A later query is a hit when its lower-cased bytes are the
same key AND its header (flags and counts) and everything after the name
(type, class, OPT with its payload size and DO bit) are byte-for-byte those of
the stored query: so only the letter case of the name may differ.  Lowering
cannot change a label's length byte (a valid one is below 0x40) nor a
compression pointer, so the name ends at the same offset; the message has
therefore already passed every check the slow path makes.

The reply for a hit is `query id + stored reply[2:12] + the query's own name
bytes + stored reply after the name`: the id and the name's letter case come
from the query (dnslib compresses the answers' owners to a pointer at offset
12, so they follow it too).  TTLs are decremented by the whole seconds since
the reply was stored; the patched bytes are rebuilt only when that age
changes, so most hits do one dict look-up, two comparisons and one join.  An
entry expires when its smallest TTL reaches zero.  Time comes in as data.

The fast lane: most clients ask again with exactly the bytes they asked
before.  `exact` maps the stored query's bytes after the id, as received, to
its entry, whose `body` is the whole reply after the id (that query's letter
case, TTLs as of `age_s`).  Equal keys mean equal header, name, type, class
and OPT, so a hit there needs no other check: `query id + body`, valid while
`now < entry.fresh_until` (the end of the current whole second of age, or the
expiry if sooner).  Past that, or for another letter case, `lookup` does the
full work above and re-ages the entry.  The UDP loop inlines this lane.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

from dnslib import QTYPE

from foobar_ref.dns.core import HEADER_BYTES, RCODE_NAMES, Malformed, read_name

MAX_ENTRIES = 20_000


@dataclass
class Entry:
    head: bytes  # query[2:12]: flags and counts, exact
    name_end: int  # offset just after the question name
    tail: bytes  # query[name_end:]: type, class and the OPT record, exact
    middle: bytes  # reply[2:12], header after the id
    rest: bytes  # reply[name_end:] (type and class onwards), TTLs as of `age_s`
    template: bytes  # reply[name_end:] as stored
    ttl_offsets: tuple[tuple[int, int], ...]  # (offset in rest, TTL when stored)
    stored_at: float
    expires_at: float
    age_s: int
    rcode: str
    log_tail: str  # the end of the query's log line: name, type, rcode
    key: bytes  # the stored query after the id, as received
    body: bytes = b""  # reply[2:] with the stored query's name, TTLs as of `age_s`
    fresh_until: float = 0.0  # `body` is exact before this time: min(next whole second of age, expires_at)


class WireCache:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self.entries: dict[bytes, Entry] = {}  # lower-cased query after the id -> entry
        self.exact: dict[bytes, Entry] = {}  # the stored query after the id, as received -> the same entry

    def __len__(self) -> int:
        return len(self.entries)

    def flush(self) -> None:
        self.entries.clear()
        self.exact.clear()

    def lookup(self, query: bytes, now: float) -> tuple[bytes, Entry] | None:
        """(reply, entry) for a query whose twin was answered before and has not expired."""
        entry = self.exact.get(query[2:])
        if entry is not None and now < entry.fresh_until:
            return query[:2] + entry.body, entry
        entry = self.entries.get(query[2:].lower())
        if entry is None or query[2:12] != entry.head or query[entry.name_end :] != entry.tail:
            return None
        if now >= entry.expires_at:
            self._forget(entry)
            return None
        age_s = int(now - entry.stored_at)
        if age_s != entry.age_s or now >= entry.fresh_until:
            _age(entry, age_s)
        return query[:2] + entry.middle + query[HEADER_BYTES : entry.name_end] + entry.rest, entry

    def store(self, query: bytes, reply: bytes, now: float) -> Entry | None:
        """Keep `reply` for `query` (both already checked and packed by the slow path); None if not cacheable."""
        try:
            labels, name_end = read_name(query, HEADER_BYTES)
            offsets, min_ttl_s = _ttl_offsets(reply, name_end)
        except (Malformed, struct.error):
            return None
        if min_ttl_s is None or min_ttl_s <= 0:
            return None
        qname = ".".join(label.decode() for label in labels).lower() + "."
        qtype = QTYPE.get(struct.unpack("!H", query[name_end : name_end + 2])[0])
        rcode = RCODE_NAMES.get(reply[3] & 0xF, str(reply[3] & 0xF))
        rest = reply[name_end:]
        tail = f', "name": {json.dumps(qname)}, "type": "{qtype}", "rcode": "{rcode}", "cache": "hit"}}\n'
        entry = Entry(
            query[2:12],
            name_end,
            query[name_end:],
            reply[2:12],
            rest,
            rest,
            offsets,
            now,
            now + min_ttl_s,
            0,
            rcode,
            tail,
            query[2:],
        )
        _age(entry, 0)
        key = query[2:].lower()
        old = self.entries.get(key)
        if old is not None:
            self._forget(old)
        while len(self.entries) >= self.max_entries:
            self._forget(next(iter(self.entries.values())))
        self.entries[key] = entry
        self.exact[entry.key] = entry
        return entry

    def _forget(self, entry: Entry) -> None:
        self.entries.pop(entry.key.lower(), None)
        if self.exact.get(entry.key) is entry:
            del self.exact[entry.key]


def _age(entry: Entry, age_s: int) -> None:
    rest = bytearray(entry.template)
    for offset, ttl_s in entry.ttl_offsets:
        struct.pack_into("!I", rest, offset, max(ttl_s - age_s, 0))
    entry.rest = bytes(rest)
    entry.age_s = age_s
    entry.body = entry.middle + entry.key[HEADER_BYTES - 2 : entry.name_end - 2] + entry.rest
    entry.fresh_until = min(entry.stored_at + age_s + 1, entry.expires_at)


def _ttl_offsets(reply: bytes, name_end: int) -> tuple[tuple[tuple[int, int], ...], int | None]:
    """Where each record's TTL sits (relative to `name_end`), and the smallest TTL (OPT excluded)."""
    ancount, nscount, arcount = struct.unpack("!HHH", reply[6:12])
    position = name_end + 4  # after the question's type and class
    offsets: list[tuple[int, int]] = []
    for _ in range(ancount + nscount + arcount):
        _, position = read_name(reply, position)
        rtype, _, ttl_s, rdlength = struct.unpack("!HHIH", reply[position : position + 10])
        if rtype != QTYPE.OPT:
            offsets.append((position + 4 - name_end, ttl_s))
        position += 10 + rdlength
    if not offsets:
        return (), None
    return tuple(offsets), min(ttl for _, ttl in offsets)
