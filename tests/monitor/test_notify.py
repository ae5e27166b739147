"""Notifications: grouping and repeat (pure), and the webhook POST over a real socket with retries."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from foobar_ref.monitor.notify import AlertEvent, Grouper, Notifier, fingerprint, rfc3339
from tests.monitor.monitorproc import WebhookSink

URL = "http://127.90.4.1:9090"
T0 = 1_700_000_000.0


def firing(name: str, t: float = T0, **labels: str) -> AlertEvent:
    return AlertEvent("firing", {"alertname": name, **labels}, {"summary": f"{name} fired"}, t, expr="up == 0")


def resolved(name: str, started: float, ended: float, **labels: str) -> AlertEvent:
    return AlertEvent(
        "resolved", {"alertname": name, **labels}, {"summary": f"{name} fired"}, started, ended, "up == 0"
    )


def test_fingerprint_is_prometheus_fnv1a_over_sorted_labels() -> None:
    assert fingerprint({}) == "cbf29ce484222325"  # FNV-1a 64 offset basis: Prometheus's empty label set
    assert fingerprint({"b": "2", "a": "1"}) == fingerprint({"a": "1", "b": "2"})
    assert fingerprint({"a": "1"}) != fingerprint({"a": "2"})
    assert len(fingerprint({"alertname": "X"})) == 16


def test_a_new_alert_is_notified_in_alertmanagers_webhook_shape() -> None:
    grouper = Grouper(repeat_interval_s=300, external_url=URL)
    (body,) = grouper.observe([firing("TargetDown", instance="127.90.2.1:9100", severity="page")], T0 + 5)
    assert body["version"] == "4"
    assert body["groupKey"] == '{}:{alertname="TargetDown"}'
    assert body["status"] == "firing"
    assert body["receiver"] == "webhook"
    assert body["groupLabels"] == {"alertname": "TargetDown"}
    assert body["commonLabels"] == {"alertname": "TargetDown", "instance": "127.90.2.1:9100", "severity": "page"}
    assert body["commonAnnotations"] == {"summary": "TargetDown fired"}
    assert body["externalURL"] == URL
    (alert,) = body["alerts"]  # type: ignore[misc]
    assert alert == {
        "status": "firing",
        "labels": {"alertname": "TargetDown", "instance": "127.90.2.1:9100", "severity": "page"},
        "annotations": {"summary": "TargetDown fired"},
        "startsAt": rfc3339(T0),
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": f"{URL}/graph?g0.expr=up+%3D%3D+0&g0.tab=1",
        "fingerprint": fingerprint({"alertname": "TargetDown", "instance": "127.90.2.1:9100", "severity": "page"}),
    }
    assert rfc3339(T0) == "2023-11-14T22:13:20.000Z"


def test_grouped_by_alertname_and_not_repeated_before_the_interval() -> None:
    grouper = Grouper(repeat_interval_s=60, external_url=URL)
    first = grouper.observe([firing("Down", instance="a"), firing("Down", instance="b"), firing("Slow")], T0)
    assert [b["groupKey"] for b in first] == ['{}:{alertname="Down"}', '{}:{alertname="Slow"}']
    assert len(first[0]["alerts"]) == 2  # type: ignore[arg-type]
    assert first[0]["commonLabels"] == {"alertname": "Down"}
    assert grouper.observe([], T0 + 5) == []
    assert grouper.observe([firing("Down", instance="a")], T0 + 30) == []  # already known: no news
    repeated = grouper.observe([], T0 + 60)
    assert [b["groupKey"] for b in repeated] == ['{}:{alertname="Down"}', '{}:{alertname="Slow"}']
    assert grouper.observe([], T0 + 100) == []


def test_a_new_member_notifies_its_group_at_once() -> None:
    grouper = Grouper(repeat_interval_s=600, external_url=URL)
    grouper.observe([firing("Down", instance="a")], T0)
    (body,) = grouper.observe([firing("Down", instance="b")], T0 + 5)
    assert sorted(a["labels"]["instance"] for a in body["alerts"]) == ["a", "b"]  # type: ignore[attr-defined]


def test_resolution_is_sent_once_with_the_firing_rest_then_forgotten() -> None:
    grouper = Grouper(repeat_interval_s=600, external_url=URL)
    grouper.observe([firing("Down", instance="a"), firing("Down", instance="b")], T0)
    (partial,) = grouper.observe([resolved("Down", T0, T0 + 20, instance="a")], T0 + 20)
    assert partial["status"] == "firing"
    statuses = {a["labels"]["instance"]: (a["status"], a["endsAt"]) for a in partial["alerts"]}  # type: ignore[attr-defined]
    assert statuses == {"a": ("resolved", rfc3339(T0 + 20)), "b": ("firing", "0001-01-01T00:00:00Z")}
    (last,) = grouper.observe([resolved("Down", T0, T0 + 40, instance="b")], T0 + 40)
    assert last["status"] == "resolved"
    assert [a["labels"]["instance"] for a in last["alerts"]] == ["b"]  # type: ignore[attr-defined]
    assert grouper.observe([], T0 + 10_000) == []
    assert grouper.observe([resolved("Never", T0, T0 + 1)], T0 + 10_001) == []  # never fired: not news


class Recorder:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []
        self.counts: list[str] = []

    def log(self, event: str, **fields: Any) -> None:
        self.lines.append((event, fields))

    def count(self, outcome: str) -> None:
        self.counts.append(outcome)


async def deliver(notifier: Notifier, bodies: list[dict[str, object]], recorder: Recorder, want: int) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(notifier.run)
        for body in bodies:
            notifier.submit(body)
        with trio.fail_after(20):
            while len([c for c in recorder.counts if c != "logged"]) < want:
                await trio.sleep(0.05)
        nursery.cancel_scope.cancel()


@pytest.fixture
def sink() -> Any:
    server = WebhookSink(("127.90.5.1", 9093), fail_first=2)
    yield server
    server.stop()


async def test_the_webhook_gets_the_json_after_retries_from_the_monitor_address(sink: WebhookSink) -> None:
    recorder = Recorder()
    notifier = Notifier("http://127.90.5.1:9093/hook?x=1", "127.90.4.1", recorder.log, recorder.count, 2.0, (0.1, 0.1))
    body = Grouper(300, URL).observe([firing("Down", instance="a")], T0)[0]
    await deliver(notifier, [body], recorder, want=1)
    assert recorder.counts == ["sent"]
    assert sink.received == [body]
    assert sink.attempts == 3 and set(sink.peers) == {"127.90.4.1"}
    events = [event for event, _ in recorder.lines]
    assert events == ["alert_notification", "alert_webhook_failed", "alert_webhook_failed", "alert_webhook_sent"]
    assert recorder.lines[0][1]["notification"] == body  # the log has the whole body, webhook or not


async def test_a_webhook_that_keeps_failing_is_given_up_and_counted(sink: WebhookSink) -> None:
    sink.fail_first = 100
    recorder = Recorder()
    notifier = Notifier("http://127.90.5.1:9093/", "127.90.4.1", recorder.log, recorder.count, 2.0, (0.1, 0.1))
    await deliver(notifier, [Grouper(300, URL).observe([firing("Down")], T0)[0]], recorder, want=1)
    assert recorder.counts == ["failed"] and sink.attempts == 3


async def test_an_unreachable_webhook_never_blocks_submit() -> None:
    recorder = Recorder()
    notifier = Notifier("http://127.90.5.2:9/", None, recorder.log, recorder.count, 0.5, ())
    bodies = [Grouper(300, URL).observe([firing(f"A{i}")], T0)[0] for i in range(3)]
    with trio.fail_after(1):  # submit only queues: nothing runs yet
        for body in bodies:
            notifier.submit(body)
    await deliver(notifier, [], recorder, want=3)
    assert recorder.counts == ["failed"] * 3


def test_without_a_url_notifications_only_go_to_the_log() -> None:
    recorder = Recorder()
    notifier = Notifier(None, None, recorder.log, recorder.count)
    notifier.submit(Grouper(300, URL).observe([firing("Down")], T0)[0])
    assert recorder.counts == ["logged"]
    assert recorder.lines[0][0] == "alert_notification"
