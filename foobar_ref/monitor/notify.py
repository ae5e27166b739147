"""Alert notifications: Alertmanager's webhook JSON, grouped by alertname, to the log and a URL.

Theory of operation
-------------------
The rule manager reports transitions after each evaluation: an alert started firing, or
resolved.  `Grouper.observe(events, now_s)` (pure, time passed in) keeps, per `alertname`, the
alerts firing now and the ones resolved since the last notification, and returns the
notifications to send, each the JSON body Alertmanager's webhook receiver gets (version "4",
groupKey, status, receiver, groupLabels, commonLabels, commonAnnotations, externalURL, alerts[]
with status, labels, annotations, startsAt, endsAt, generatorURL, fingerprint).

Alertmanager's timers, simplified:

- group_wait = 0 and group_interval = the evaluation interval: a group is notified at the end of
  the evaluation in which one of its alerts started firing or resolved, with every alert of the
  group in the body (the firing ones, and the ones resolved since the last notification);
- repeat_interval: a group whose alerts all still fire and nothing changed is notified again once
  `repeat_interval_s` passed since its last notification, never more often;
- a group whose last alert resolved is notified once (status "resolved") and forgotten.

`Notifier` carries them out without ever blocking evaluation: `submit` writes the notification to
the monitor's log at once and puts it on a bounded queue (full: dropped and counted); one task
POSTs each to `webhook_url` with a timeout and a bounded number of attempts.
"""

from __future__ import annotations

import json
import ssl
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import h11
import trio

from foobar_ref.runtime.trio_shell import connect_tcp
from foobar_ref.wire.http import HttpError, new_connection, read_message, request_bytes

RECEIVER = "webhook"
ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt of an alert that has not ended
WEBHOOK_TIMEOUT_S = 5.0
RETRY_BACKOFF_S = (1.0, 2.0)  # before the 2nd and 3rd attempts: three at most
QUEUE_LENGTH = 64
MAX_WEBHOOK_ANSWER_BYTES = 64 * 1024

_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_SEPARATOR = 0xFF


@dataclass(frozen=True)
class AlertEvent:
    """One alert's transition, as the rule manager reports it."""

    status: str  # firing | resolved
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at_s: float
    ends_at_s: float | None = None  # when it resolved
    expr: str = ""  # the rule's expression, for generatorURL

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)


class Change(Protocol):
    """What the rule manager reports (foobar_ref.monitor.alerting.AlertChange)."""

    @property
    def status(self) -> str: ...
    @property
    def labels(self) -> dict[str, str]: ...
    @property
    def annotations(self) -> dict[str, str]: ...
    @property
    def starts_at_s(self) -> float: ...
    @property
    def ends_at_s(self) -> float | None: ...
    @property
    def expr(self) -> str: ...


def alert_events(changes: Iterable[Change]) -> list[AlertEvent]:
    return [AlertEvent(c.status, c.labels, c.annotations, c.starts_at_s, c.ends_at_s, c.expr) for c in changes]


def fingerprint(labels: Mapping[str, str]) -> str:
    """Prometheus's label-set fingerprint (FNV-1a 64 over sorted name, 0xff, value, 0xff), as 16 hex digits."""
    digest = _FNV_OFFSET
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in part.encode() + bytes([_SEPARATOR]):
                digest = ((digest ^ byte) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return f"{digest:016x}"


def rfc3339(t_s: float) -> str:
    return datetime.fromtimestamp(t_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class _Group:
    firing: dict[str, AlertEvent] = field(default_factory=dict)  # by fingerprint
    resolved: dict[str, AlertEvent] = field(default_factory=dict)
    changed: bool = False
    last_sent_s: float | None = None


class Grouper:
    """Transitions in, webhook bodies out (see the theory of operation)."""

    def __init__(self, repeat_interval_s: float, external_url: str, receiver: str = RECEIVER) -> None:
        self.repeat_interval_s = repeat_interval_s
        self.external_url = external_url.rstrip("/")
        self.receiver = receiver
        self.groups: dict[str, _Group] = {}

    def observe(self, events: Iterable[AlertEvent], now_s: float) -> list[dict[str, object]]:
        for event in events:
            group = self.groups.setdefault(event.labels.get("alertname", ""), _Group())
            key = event.fingerprint
            if event.status == "firing":
                group.changed |= key not in group.firing
                group.firing[key] = event
                group.resolved.pop(key, None)
            elif key in group.firing:  # a resolution of an alert never notified as firing is not news
                group.firing.pop(key, None)
                group.resolved[key] = event
                group.changed = True
        bodies = []
        for name, group in sorted(self.groups.items()):
            repeat_due = group.last_sent_s is None or now_s - group.last_sent_s >= self.repeat_interval_s
            if group.changed or (group.firing and repeat_due):
                bodies.append(self._body(name, group))
                group.changed, group.last_sent_s = False, now_s
                group.resolved.clear()
        self.groups = {name: group for name, group in self.groups.items() if group.firing}
        return bodies

    def _body(self, alertname: str, group: _Group) -> dict[str, object]:
        alerts = [*group.firing.values(), *group.resolved.values()]
        return {
            "version": "4",
            "groupKey": f'{{}}:{{alertname="{alertname}"}}',
            "truncatedAlerts": 0,
            "status": "firing" if group.firing else "resolved",
            "receiver": self.receiver,
            "groupLabels": {"alertname": alertname},
            "commonLabels": _common([a.labels for a in alerts]),
            "commonAnnotations": _common([a.annotations for a in alerts]),
            "externalURL": self.external_url,
            "alerts": [self._alert(a) for a in alerts],
        }

    def _alert(self, event: AlertEvent) -> dict[str, object]:
        query = urllib.parse.urlencode({"g0.expr": event.expr, "g0.tab": "1"})
        return {
            "status": event.status,
            "labels": dict(event.labels),
            "annotations": dict(event.annotations),
            "startsAt": rfc3339(event.starts_at_s),
            "endsAt": rfc3339(event.ends_at_s) if event.ends_at_s is not None else ZERO_TIME,
            "generatorURL": f"{self.external_url}/graph?{query}",
            "fingerprint": event.fingerprint,
        }


def _common(maps: list[Mapping[str, str]]) -> dict[str, str]:
    """The pairs every map has with the same value."""
    if not maps:
        return {}
    first = dict(maps[0])
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in maps[1:])}


Log = Callable[..., None]
Count = Callable[[str], None]


class Notifier:
    """The log line at once, then the webhook POST from a task of its own, never blocking the caller."""

    def __init__(
        self,
        webhook_url: str | None,
        source_ip: str | None,
        log: Log,
        count: Count,
        timeout_s: float = WEBHOOK_TIMEOUT_S,
        backoff_s: tuple[float, ...] = RETRY_BACKOFF_S,
    ) -> None:
        self.url = urllib.parse.urlsplit(webhook_url) if webhook_url else None
        self.source_ip = source_ip
        self.log = log
        self.count = count
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.send_channel, self.receive_channel = trio.open_memory_channel[dict[str, object]](QUEUE_LENGTH)

    def submit(self, body: dict[str, object]) -> None:
        self.log("alert_notification", group=body["groupKey"], status=body["status"], notification=body)
        if self.url is None:
            self.count("logged")
            return
        try:
            self.send_channel.send_nowait(body)
        except trio.WouldBlock:
            self.count("dropped")
            self.log("alert_notification_dropped", group=body["groupKey"], reason="webhook queue full")

    async def run(self) -> None:
        async with self.receive_channel:
            async for body in self.receive_channel:
                await self._deliver(body)

    async def _deliver(self, body: dict[str, object]) -> None:
        payload = json.dumps(body).encode()
        for attempt in range(len(self.backoff_s) + 1):
            if attempt:
                await trio.sleep(self.backoff_s[attempt - 1])
            try:
                with trio.fail_after(self.timeout_s):
                    status = await self._post(payload)
            except (OSError, trio.TooSlowError, trio.BrokenResourceError, HttpError, ssl.SSLError) as err:
                problem = f"{type(err).__name__}: {err}"
            else:
                if 200 <= status < 300:
                    self.count("sent")
                    self.log("alert_webhook_sent", group=body["groupKey"], status=status, attempt=attempt + 1)
                    return
                problem = f"HTTP status {status}"
            self.log("alert_webhook_failed", group=body["groupKey"], attempt=attempt + 1, error=problem)
        self.count("failed")

    async def _post(self, payload: bytes) -> int:
        assert self.url is not None and self.url.hostname is not None
        https = self.url.scheme == "https"
        port = self.url.port or (443 if https else 80)
        ip = await _resolve(self.url.hostname, port)
        source = self.source_ip if ip.startswith("127.") else None
        stream: trio.abc.Stream = await connect_tcp(ip, port, source_ip=source, timeout_s=self.timeout_s)
        if https:
            stream = trio.SSLStream(stream, ssl.create_default_context(), server_hostname=self.url.hostname)
        async with stream:
            conn = new_connection(h11.CLIENT)
            target = (self.url.path or "/") + (f"?{self.url.query}" if self.url.query else "")
            headers = [
                ("Host", self.url.netloc),
                ("Content-Type", "application/json"),
                ("User-Agent", "foobar-ref-monitor"),
                ("Connection", "close"),
            ]
            await stream.send_all(request_bytes(conn, "POST", target, headers, payload))

            async def receive(max_bytes: int) -> bytes:
                return bytes(await stream.receive_some(max_bytes))

            reply = await read_message(conn, receive, MAX_WEBHOOK_ANSWER_BYTES)
        if reply is None or not isinstance(reply.head, h11.Response):
            raise HttpError(502, "the webhook closed the connection without answering")
        return reply.head.status_code


async def _resolve(hostname: str, port: int) -> str:
    infos = await trio.socket.getaddrinfo(hostname, port, family=trio.socket.AF_INET, type=trio.socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"no IPv4 address for {hostname}")
    return str(infos[0][4][0])
