"""Reliability matrix B1 (HTTP bad input): the raw cases in tests/wire/cases and what each hop answers.

One file per case, named by row id (`H-03a.http` = row H-03, first variant), so a
fuzzer can take the folder as its seed corpus.  `PARSER` is what `read_message`
does with the bytes: a set of acceptable statuses, or `ACCEPTED` when the bytes
are a valid request.  The hops answer the same status for a refused case and
close; for an accepted case `LB_ACCEPTED` / `WEB_ACCEPTED` say what each answers.
"""

from __future__ import annotations

from pathlib import Path

CASES = Path(__file__).parent / "cases"
ACCEPTED: frozenset[int] = frozenset()  # parses to a Message: the hop decides
# H-31: every refusal read_message may give (405: CONNECT and TRACE, H-25; 408 comes from the caller's timer)
ALLOWED_PARSER_STATUSES = frozenset({400, 405, 408, 413, 414, 431, 501, 505})

_400 = frozenset({400})
PARSER: dict[str, frozenset[int]] = {
    "H-01": _400,  # TE + CL: smuggling guard
    "H-02": _400,  # two differing Content-Length
    "H-03a": _400,  # Content-Length: +5
    "H-03b": _400,  # -1
    "H-03c": _400,  # 0x10
    "H-03d": _400,  # "5 5"
    "H-04": frozenset({413}),  # 20-digit Content-Length: refused before the body
    "H-05": frozenset({400, 501}),  # TE: chunked, chunked
    "H-06": frozenset({501}),  # TE: gzip, chunked
    "H-07": frozenset({400, 501}),  # two TE: chunked lines
    "H-08": frozenset({501}),  # TE: xchunked + CL: never framed by CL
    "H-09": _400,  # TE: \x0bchunked
    "H-10": _400,  # space before the colon
    "H-11": _400,  # HTTP/1.0 + TE
    "H-12": _400,  # LF inside a chunk extension
    "H-13": _400,  # bad chunk terminator
    "H-14a": _400,  # chunk size 0x2
    "H-14b": _400,  # chunk size +2
    "H-14c": frozenset({413}),  # chunk size of 20 hex digits
    "H-15": _400,  # chunk-size line ending in bare LF
    "H-16": _400,  # obs-fold
    "H-17a": _400,  # bare CR in a value
    "H-17b": _400,  # NUL in a value
    "H-18": ACCEPTED,  # bare LF line endings: parsed, and re-serialised with CRLF when forwarded
    "H-19a": _400,  # HTTP/1.1 without Host
    "H-19b": _400,  # two Host lines
    "H-20": frozenset({414}),  # 9 KiB request line
    "H-21a": frozenset({431}),  # one 9 KiB header
    "H-21b": frozenset({431}),  # 17 KiB head in one piece
    "H-21c": frozenset({431}),  # 101 headers
    "H-22a": frozenset({505}),  # HTTP/2.0
    "H-22b": frozenset({505}),  # the HTTP/2 preface
    "H-22c": frozenset({505}),  # HTTP/9.9
    "H-23a": _400,  # lower-case http/1.1
    "H-23b": _400,  # space in the target
    "H-23c": _400,  # @ in the method
    "H-23d": _400,  # space in a header name
    "H-23e": _400,  # empty header name
    "H-24": _400,  # absolute-form with a foreign authority
    "H-25a": _400,  # GET *
    "H-25b": _400,  # OPTIONS */x
    "H-25c": frozenset({405}),  # CONNECT
    "H-25d": frozenset({405}),  # TRACE
    "H-26a": ACCEPTED,  # /../../etc/passwd
    "H-26b": ACCEPTED,  # /%2e%2e/%2e%2e/etc/passwd
    "H-26c": ACCEPTED,  # /%00
    "H-28": ACCEPTED,  # an encoded CRLF + Set-Cookie in the path
    "H-29": _400,  # a TLS ClientHello on a plain-HTTP port
    "H-32": frozenset({413}),  # HTTP/1.0 GET with a body
}

# Accepted cases: what the balancer answers (its fake backends say 200) and what a web server answers.
LB_ACCEPTED = {"H-18": 200, "H-26a": 400, "H-26b": 400, "H-26c": 400, "H-28": 400}
WEB_ACCEPTED = {"H-18": 200, "H-26a": 404, "H-26b": 404, "H-26c": 404, "H-28": 404}


def case(name: str) -> bytes:
    return (CASES / f"{name}.http").read_bytes()


def refused() -> list[str]:
    return [name for name, statuses in PARSER.items() if statuses]
