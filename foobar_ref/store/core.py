"""The store's decisions, without I/O: validate a request, say which query to run, shape the answer.

Theory of operation
-------------------
`decide(request)` turns one parsed HTTP request into either a `Reply` (an error
the store answers at once: 404, 405, 400, 415, 422) or a command for the shell
to carry out against the database: `Insert`, `Recent` or `CheckHealth`.  The
shell runs the command with the repository and hands the result back to
`created`, `listing` or `health`, which build the `Reply`; a database that
does not answer becomes `unavailable(...)`, a 503.  Nothing here touches a
socket, a database or a clock, so tests drive it as transcripts:
`decide(Request("POST", "/messages", ...)) == Insert("hi")`.

Validation order for `POST /messages`: media type (415) before body bytes
(invalid UTF-8 or malformed JSON: 400) before meaning (not an object with a
`text` string of 1..1000 characters: 422).  Duplicate keys are malformed (400)
rather than silently last-wins.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAX_TEXT_CHARS = 1000
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
JSON_TYPE = "application/json"

_ALLOWED = {"/health": ("GET",), "/messages": ("GET", "POST")}


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    content_type: str | None = None
    body: bytes = b""


@dataclass(frozen=True)
class Reply:
    status: int
    payload: dict[str, Any]
    allow: tuple[str, ...] = ()


@dataclass(frozen=True)
class Insert:
    text: str


@dataclass(frozen=True)
class Recent:
    limit: int


@dataclass(frozen=True)
class CheckHealth:
    pass


@dataclass(frozen=True)
class Row:
    """One stored message as the repository returns it (created_at already ISO 8601 text)."""

    id: int
    text: str
    served_by: str
    created_at: str


@dataclass(frozen=True)
class Where:
    """Who answers: this store's name and the databases it writes to and reads from."""

    hop: str
    write_to: str
    read_from: str


Decision = Reply | Insert | Recent | CheckHealth


def error(status: int, message: str, allow: tuple[str, ...] = ()) -> Reply:
    return Reply(status, {"error": message, "status": status}, allow)


def decide(request: Request) -> Decision:
    parts = urlsplit(request.target)
    allowed = _ALLOWED.get(parts.path)
    if allowed is None:
        return error(404, f"no such resource: {parts.path}")
    if request.method not in allowed:
        return error(405, f"{request.method} is not allowed on {parts.path}", allowed)
    if parts.path == "/health":
        return CheckHealth()
    if request.method == "GET":
        return _recent(parts.query)
    return _insert(request)


def _recent(query: str) -> Recent | Reply:
    try:
        values = parse_qs(query, keep_blank_values=True, strict_parsing=False, max_num_fields=20).get("limit")
    except ValueError:
        return error(400, "too many query parameters")
    if values is None:
        return Recent(DEFAULT_LIMIT)
    if len(values) != 1 or not values[0].isascii() or not values[0].isdigit():
        return error(422, f"limit must be one whole number from 1 to {MAX_LIMIT}")
    limit = int(values[0])
    if not 1 <= limit <= MAX_LIMIT:
        return error(422, f"limit must be from 1 to {MAX_LIMIT}, not {limit}")
    return Recent(limit)


def _insert(request: Request) -> Insert | Reply:
    media, _, params = (request.content_type or "").partition(";")
    if media.strip().lower() != JSON_TYPE:
        return error(415, f"send the message as {JSON_TYPE}")
    charset = params.strip().lower()
    if charset and charset.replace(" ", "") not in ("charset=utf-8", 'charset="utf-8"'):
        return error(415, "JSON must be UTF-8")
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError as err:
        return error(400, f"body is not valid UTF-8 (byte {err.start})")
    try:
        document = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except (ValueError, RecursionError) as err:
        return error(400, f"body is not valid JSON: {err}")
    if not isinstance(document, dict) or not isinstance(document.get("text"), str):
        return error(422, 'expected a JSON object {"text": "..."}')
    return _checked_text(document["text"])


def _checked_text(value: str) -> Insert | Reply:
    if not 1 <= len(value) <= MAX_TEXT_CHARS:
        return error(422, f"text must be 1 to {MAX_TEXT_CHARS} characters, not {len(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return error(422, "text contains a lone surrogate (\\ud800-\\udfff), which is not a character")
    return Insert(value)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    duplicated = sorted({k for k in keys if keys.count(k) > 1})
    if duplicated:
        raise ValueError(f"duplicate key {duplicated[0]!r}")
    return dict(pairs)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# --- answers from database results -------------------------------------------------


def created(where: Where, row_id: int, text: str) -> Reply:
    return Reply(201, {"id": row_id, "text": text, "served_by": where.hop, "written_to": where.write_to})


def listing(where: Where, rows: Sequence[Row]) -> Reply:
    messages = [{"id": r.id, "text": r.text, "served_by": r.served_by, "created_at": r.created_at} for r in rows]
    return Reply(200, {"messages": messages, "served_by": where.hop, "read_from": where.read_from})


def health(where: Where, problems: dict[str, str | None]) -> Reply:
    """`problems`: database name -> None when it answered, else why not."""
    databases = {name: ("ok" if why is None else why) for name, why in problems.items()}
    ok = all(why is None for why in problems.values())
    return Reply(200 if ok else 503, {"status": "ok" if ok else "degraded", "hop": where.hop, "databases": databases})


def unavailable(database: str, reason: str) -> Reply:
    return error(503, f"database {database} unavailable: {reason}")
