"""The one error the HTTP helpers raise: a message to refuse, with the status to answer."""

from __future__ import annotations


class HttpError(Exception):
    """A message we must refuse; `status` is what to answer (h11's hint style)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
