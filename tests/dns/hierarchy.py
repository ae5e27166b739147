"""Real dns processes for tests: a copy of the seed's topology folder moved to 127.0.50.x, started and stopped."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from foobar_ref.observe.metrics import parse_exposition
from foobar_ref.runtime.admin import admin_socket_path, read_metrics

ROOT = Path(__file__).resolve().parents[2]
TOPOLOGIES = ROOT / "foobar_ref" / "topologies"
READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0
AUTHORITIES = ("dns-root", "dns-com", "dns-foobar")
CLIENT_IP = "127.0.50.200"  # a source address of our own for test clients


def copy_topology(
    folder: Path,
    subnet: str = "127.0.50",
    extra: dict[str, str] | None = None,
    edits: dict[str, tuple[str, str]] | None = None,
) -> Path:
    """Copy every file of the seed's folder into `folder`, with 127.0.3.x and 127.0.0.10 moved into `subnet`.

    `extra` maps a file name (e.g. "foobar.com.zone") to master-format text appended to it; `edits` maps a
    file name to one (old, new) replacement that must apply.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for source in TOPOLOGIES.iterdir():
        if source.is_file():
            text = source.read_text().replace("127.0.3.", f"{subnet}.").replace('"127.0.0.10"', f'"{subnet}.100"')
            if edits and source.name in edits:
                old, new = edits[source.name]
                assert old in text, f"{source.name} changed: {old!r} not found"
                text = text.replace(old, new)
            (folder / source.name).write_text(text + (extra or {}).get(source.name, ""))
    return folder / "seed.toml"


@dataclass
class Hop:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    err: Path
    state: Path
    _stopped: bool = field(default=False)

    def log_records(self) -> list[dict[str, object]]:
        lines = self.log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def events(self, event: str) -> list[dict[str, object]]:
        return [r for r in self.log_records() if r.get("event") == event]

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return parse_exposition(read_metrics(admin_socket_path(self.state, self.name)))

    def metric(self, name: str, **labels: str) -> float:
        wanted = tuple(sorted({"hop": self.name, **labels}.items()))
        return self.metrics().get((name, wanted), 0.0)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT_S)
            raise


def start(topology: Path, hop: str, *flags: str, wait_ready: bool = True) -> Hop:
    folder = topology.parent
    log, err, state = folder / f"{hop}.log", folder / f"{hop}.err", folder / "state"
    argv = [sys.executable, "-m", "foobar_ref.dns", "--topology", str(topology), "--hop", hop, "--state", str(state)]
    with log.open("wb") as out, err.open("wb") as errors:
        process = subprocess.Popen([*argv, *flags], stdout=out, stderr=errors, cwd=ROOT)
    running = Hop(hop, process, log, err, state)
    if wait_ready:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while f"READY hop={hop}" not in log.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                running.stop()
                pytest.fail(f"{hop} not ready: {err.read_text()}")
            time.sleep(0.05)
    return running


def wait_for(predicate, timeout_s: float = 3.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll `predicate` until it returns something truthy (logs are written asynchronously)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)
