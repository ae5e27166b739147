"""The access log: one line's format read back, the writer's rotation, and the first-byte meter. No processes."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from foobar_ref.observe.access_log import LineFormat, access_log_path, parse_line
from foobar_ref.observe.http_metrics import FirstByte
from foobar_ref.web.access_log import AccessLog

NOW = 1_760_000_000.25


def line(request: bytes | None, status: int = 200, agent: bytes | None = b"curl/8") -> bytes:
    return LineFormat().line(NOW, "127.0.0.10", request, status, 12, None, agent, 0.0042)


def test_a_line_is_nginx_combined_plus_the_request_time() -> None:
    text = line(b"GET /health HTTP/1.1").decode()
    assert text.startswith("127.0.0.10 - - [") and text.endswith('] "GET /health HTTP/1.1" 200 12 "-" "curl/8" 0.004\n')
    assert parse_line(text.encode()) == ("200", True)
    assert parse_line(line(b"GET /healthz HTTP/1.1", 404)) == ("404", False)
    assert parse_line(line(b"GET /health?full=1 HTTP/1.1")) == ("200", True)
    assert parse_line(line(None, 400)) == ("400", False)  # refused before its head was read: "-"


def test_lines_that_are_not_this_format_are_refused() -> None:
    for junk in (b"", b"hello", b'1.2.3.4 - - [x] "GET / HTTP/1.1" 2000 1 "-" "-" 0.1', b'a "b" c "d"'):
        assert parse_line(junk) is None


@given(
    target=st.binary(min_size=1, max_size=60).map(lambda b: b"/" + b.replace(b" ", b"")),
    agent=st.binary(max_size=60),
    status=st.integers(100, 599),
)
def test_any_request_and_user_agent_read_back(target: bytes, agent: bytes, status: int) -> None:
    written = line(b"GET " + target + b" HTTP/1.1", status, agent or None)
    assert written.count(b"\n") == 1 and written.endswith(b"\n")
    assert parse_line(written) == (str(status), target == b"/health" or target.startswith(b"/health?"))


def test_the_writer_rotates_by_size_and_keeps_a_bounded_number_of_files(tmp_path: Path) -> None:
    path = access_log_path(tmp_path, "web-01")
    log = AccessLog(path, max_bytes=100, backups=2)
    for number in range(12):
        log.write(b"%02d %s\n" % (number, b"x" * 36))  # 40 bytes: two lines a file
    log.close()
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "web-01.access.log",
        "web-01.access.log.1",
        "web-01.access.log.2",
    ]
    assert path.read_bytes().split(b" ")[0] == b"10"
    assert [f.read_bytes()[:2] for f in (path.with_name(path.name + ".2"), path.with_name(path.name + ".1"), path)] == [
        b"06",
        b"08",
        b"10",
    ]
    assert log.errors == 0


def test_the_writer_appends_to_a_file_left_by_a_previous_run(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "w.access.log"
    AccessLog(path, max_bytes=1000).write(b"first\n")
    AccessLog(path, max_bytes=1000).write(b"second\n")
    assert path.read_bytes() == b"first\nsecond\n"


def test_a_write_that_fails_is_counted_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "gone" / "w.access.log"
    log = AccessLog(path, max_bytes=10, backups=1)
    log.write(b"0123456789\n")
    (tmp_path / "gone").rename(tmp_path / "moved")  # the folder under the log went away: rotation fails
    log.write(b"more\n")
    assert log.errors == 1 and log.last_error is not None


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_first_byte_ignores_the_idle_time_before_a_request() -> None:
    clock = Clock()
    meter = FirstByte(clock)
    meter.next_request(buffered=False)
    clock.now = 160.0  # a minute of keep-alive idle
    meter.received(10)
    clock.now = 160.5
    meter.received(20)
    clock.now = 161.0
    assert meter.elapsed_s() == 1.0 and meter.take_bytes() == 30 and meter.take_bytes() == 0


def test_a_pipelined_request_began_when_the_read_that_carried_it_returned() -> None:
    clock = Clock()
    meter = FirstByte(clock)
    meter.next_request(buffered=False)
    clock.now = 101.0
    meter.received(200)  # two requests in one read
    clock.now = 101.5
    meter.next_request(buffered=True)  # the second one's bytes are already here
    clock.now = 102.0
    assert meter.elapsed_s() == 1.0
