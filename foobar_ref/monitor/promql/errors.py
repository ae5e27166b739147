"""PromQL's error, shaped like the Prometheus HTTP API's: an `errorType` and an `error` text."""

from __future__ import annotations


class PromQLError(Exception):
    """A query that cannot be answered.

    `error_type` is the API's `errorType`: `bad_data` for a query that does not parse or type-check
    (its message starts with `line:column:` as Prometheus's does), `execution` for one that fails
    while running (too many samples, duplicate series), `timeout` when the caller stopped it.
    """

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message

    def __str__(self) -> str:
        return self.message


def position_of(query: str, offset: int) -> str:
    """`line:column` (both from 1) of a character offset, as Prometheus prints it."""
    offset = max(0, min(offset, len(query)))
    line = query.count("\n", 0, offset) + 1
    column = offset - (query.rfind("\n", 0, offset) + 1) + 1
    return f"{line}:{column}"


def parse_error(query: str, offset: int, message: str) -> PromQLError:
    return PromQLError("bad_data", f"{position_of(query, offset)}: parse error: {message}")
