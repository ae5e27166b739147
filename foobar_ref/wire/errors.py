"""The errors of the HTTP layer: protocol errors split Local/Remote with a status hint, as h11 does,
and the ways a client exchange can fail, told apart by whether any response byte came back.

- `HttpError(status, reason)`: a message we must refuse; `status` is what to answer.
- `RemoteProtocolError`: the peer broke HTTP/1.1 (or a limit); answer `status` and close.
- `LocalProtocolError`: we asked the connection for something HTTP/1.1 forbids (a bug or a
  bad header value of ours); `status` is the hint, 500 for most.
- `ExchangeFailed` and its three kinds, raised by the client drivers:
  `NoResponse` (closed or reset before a single response byte: the request may be retried when
  it is idempotent and its body has not started streaming), `BadResponse` (bytes came back that
  are not a whole, valid response), `ResponseTimeout` (the request not taken, no whole head, or no
  body progress, in time).
- `SendTimeout`: the peer did not take our bytes in time (a ConnectionError: the peer is gone).
"""

from __future__ import annotations


class HttpError(Exception):
    """A message we must refuse; `status` is what to answer (h11's hint style)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class ProtocolError(HttpError):
    """HTTP/1.1 was broken on one side of the connection; `status` is the hint for the answer."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something we refuse: answer `status` (400, 408, 413, 414, 431, 501, 505 ...) and close."""


class LocalProtocolError(ProtocolError):
    """We tried to send something HTTP/1.1 does not allow at this point (status hint 500 unless said)."""


class ExchangeFailed(Exception):
    """A client exchange that did not complete.

    `received_bytes` counts the response bytes that came back before the failure,
    `sent_bytes` the request bytes handed to the transport.
    """

    def __init__(self, detail: str, received_bytes: int = 0, sent_bytes: int = 0) -> None:
        super().__init__(detail)
        self.detail = detail
        self.received_bytes = received_bytes
        self.sent_bytes = sent_bytes

    @property
    def nothing_received(self) -> bool:
        return self.received_bytes == 0


class NoResponse(ExchangeFailed):
    """Closed or reset before the first byte of a response."""


class BadResponse(ExchangeFailed):
    """The bytes that came back are not a whole, valid response (cut short, malformed, too large)."""


class ResponseTimeout(ExchangeFailed):
    """The exchange did not progress in time: the request not taken, no head, or no next piece of body."""


class SendTimeout(ConnectionError):
    """The peer did not take our bytes within the send timeout."""
