"""Capture files and index: written by `Capture`, read back by `read_capture` (no sockets)."""

from __future__ import annotations

from pathlib import Path

from foobar_ref import topology
from foobar_ref.firewall.capture import INDEX_NAME, Capture, read_capture
from foobar_ref.firewall.core import ConnectionTable, Direction
from foobar_ref.firewall.rules import load_for

WEB_01 = "127.0.2.1"


def _table(first_id: int = 1) -> ConnectionTable:
    return ConnectionTable(load_for(topology.load(None), "firewall-2"), next_id=first_id)


def test_a_relayed_connection_is_written_and_read_back(tmp_path: Path) -> None:
    capture = Capture(tmp_path)
    t = _table(capture.first_id)
    conn = t.open(("127.0.1.1", 40000), (WEB_01, 80), now=10.0)
    t.connected(conn, (WEB_01, 50000), ("127.0.12.1", 80))
    tap = capture.opened(conn)
    for direction, data in [
        (Direction.IN, b"GET / HTTP/1.1\r\n"),
        (Direction.OUT, b"HTTP/1.1 200"),
        (Direction.IN, b"\r\n"),
    ]:
        tap.write(direction, memoryview(data))
        t.count(conn, direction, len(data))
    live = read_capture(tmp_path)
    assert len(live) == 1 and live[0].end is None and live[0].c2s == b"GET / HTTP/1.1\r\n\r\n"
    tap.close()
    capture.closed(t.close(conn, now=11.0, reason="closed both ways"))
    capture.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "000001_127.0.1.1_40000_to_127.0.2.1_80.c2s",
        "000001_127.0.1.1_40000_to_127.0.2.1_80.s2c",
        INDEX_NAME,
    ]
    [record] = read_capture(tmp_path)
    assert (record.src, record.dst, record.upstream) == (
        "127.0.1.1:40000",
        "127.0.2.1:80",
        "127.0.2.1:50000->127.0.12.1:80",
    )
    assert (record.action, record.rule, record.start, record.end) == (
        "accept",
        'tcp dport 80 ip saddr @lb-01 log prefix "firewall-2 accept: " accept',
        10.0,
        11.0,
    )
    assert (record.bytes_in, record.bytes_out, record.s2c, record.truncated) == (18, 12, b"HTTP/1.1 200", False)


def test_files_are_bounded_and_truncation_is_visible(tmp_path: Path) -> None:
    capture = Capture(tmp_path, max_file_bytes=10)
    t = _table()
    conn = t.open(("127.0.1.1", 1), (WEB_01, 80), now=0.0)
    tap = capture.opened(conn)
    for chunk in (b"0123456", b"789abc", b"def"):
        tap.write(Direction.IN, chunk)
        t.count(conn, Direction.IN, len(chunk))
    tap.close()
    capture.closed(t.close(conn, now=1.0, reason="done"))
    [record] = read_capture(tmp_path)
    assert record.c2s == b"0123456789" and record.bytes_in == 16 and record.truncated


def test_rejected_connections_are_in_the_index_without_files(tmp_path: Path) -> None:
    capture = Capture(tmp_path)
    t = _table()
    conn = t.open(("127.0.0.10", 2), (WEB_01, 80), now=0.0)
    capture.closed(t.close(conn, now=0.0, reason="reset"))
    capture.close()
    [record] = read_capture(tmp_path)
    assert (record.action, record.rule, record.c2s, record.upstream) == (
        "reject",
        'ip saddr @client log prefix "firewall-2 reject: " reject',
        b"",
        None,
    )


def test_a_restarted_firewall_continues_the_ids(tmp_path: Path) -> None:
    first = Capture(tmp_path)
    t = _table(first.first_id)
    for port in (1, 2, 3):
        first.closed(t.close(t.open(("127.0.0.10", port), (WEB_01, 80), now=0.0), now=0.0, reason="reset"))
    first.close()
    again = Capture(tmp_path)
    assert again.first_id == 4
    again.close()


def test_torn_or_foreign_index_lines_are_skipped(tmp_path: Path) -> None:
    (tmp_path / INDEX_NAME).write_bytes(
        b'{"event": "closed", "id": 7, "src": "127.0.0.10:1", "dst": "127.0.2.1:80", "action": "reject"}\n'
        b"not json\n[1, 2]\n" + b'{"id": "eight"}\n' + b"x" * 70000 + b'\n{"event": "closed", "id": 9, "src'
    )
    (tmp_path / "notes.txt").write_text("a file that is not a capture")
    (tmp_path / "000012_127.0.0.10_5_to_127.0.2.1_80.c2s").write_bytes(b"live")
    records = read_capture(tmp_path)
    assert [(r.id, r.action, r.c2s) for r in records] == [(7, "reject", b""), (12, "accept", b"live")]
    again = Capture(tmp_path)
    assert again.first_id == 13
    again.close()
