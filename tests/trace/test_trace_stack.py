"""`foobar-ref trace` on a whole stack of real processes, moved to 127.80.x.y so it runs beside the seed's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.stackutil import UP_TIMEOUT_S, cli, shifted_topology

pytestmark = pytest.mark.stack
OCTET = 80


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """The CLI options that point at the shifted stack (--topology, --state)."""
    folder = tmp_path_factory.mktemp("trace-stack")
    topology = shifted_topology(folder, OCTET)
    state = folder / "state"
    options = ["--topology", str(topology), "--state", str(state)]
    try:
        started = cli("up", "--detach", *options, timeout_s=UP_TIMEOUT_S)
        if started.returncode != 0:
            pytest.fail(f"foobar-ref up failed:\n{started.stdout}\n{started.stderr}")
        yield options
    finally:
        cli("down", "--state", str(state))


def trace(options: list[str], *args: str) -> dict[str, Any]:
    done = cli("trace", *args, "--json", *options)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def path_spans(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {span["hop"]: span for span in result["spans"] if span["depth"] == 0}


def test_a_get_shows_every_hop_in_path_order_with_what_it_saw(stack: list[str]) -> None:
    result = trace(stack, "https://www.foobar.com/")
    assert result["status"] == 200 and result["missing"] == []
    served_by = result["served_by"]
    assert served_by in ("web-01", "web-02")
    firewall = "firewall-2" if served_by == "web-01" else "firewall-3"
    order = [span["hop"] for span in result["spans"] if span["depth"] == 0]
    assert [hop for hop in order if hop != "client"] == ["dns", "firewall-1", "lb-01", firewall, served_by]
    spans = path_spans(result)
    assert spans["firewall-1"]["saw"].startswith("ciphertext")
    assert spans["firewall-1"]["decision"].startswith("accept by rule 'tcp dport 443")
    assert spans[firewall]["saw"] == "plaintext HTTP" and spans[served_by]["saw"] == "plaintext HTTP"
    assert spans[firewall]["decision"].startswith("accept by rule 'tcp dport 80 ip saddr @lb-01")
    assert "joined by time" not in spans[firewall]["note"]  # joined on the balancer's upstream 4-tuple
    assert spans["lb-01"]["decision"] == f"round-robin to {served_by}, 200"
    assert spans["dns"]["decision"].startswith("NOERROR")
    # every span lies within the request, give or take the moment a hop takes to write its line
    total_ms = spans["client"]["duration_ms"]
    for span in result["spans"]:
        assert -5 <= span["start_ms"] <= span["start_ms"] + span["duration_ms"] <= total_ms + 50, span


def test_the_next_request_goes_to_the_other_backend_and_says_so(stack: list[str]) -> None:
    first, second = trace(stack, "https://www.foobar.com/"), trace(stack, "https://www.foobar.com/")
    assert {first["served_by"], second["served_by"]} == {"web-01", "web-02"}
    for result in (first, second):
        assert path_spans(result)["lb-01"]["decision"] == f"round-robin to {result['served_by']}, 200"


def test_a_post_includes_the_store_that_wrote_it(stack: list[str]) -> None:
    result = trace(stack, "-X", "POST", "-d", '{"text": "traced"}', "https://www.foobar.com/api/messages")
    assert result["status"] == 201 and result["missing"] == []
    web = result["served_by"]
    store = "store-01" if web == "web-01" else "store-02"
    order = [span["hop"] for span in result["spans"] if span["depth"] == 0]
    assert order[-2:] == [web, store]
    spans = path_spans(result)
    assert spans[store]["decision"] == "201 for POST /messages, wrote to db-01"
    assert spans[store]["bytes_in"] == len('{"text": "traced"}')
    assert spans[web]["decision"] == f"201 for POST /api/messages, asked {store}"


def test_the_waterfall_text_names_each_hop(stack: list[str]) -> None:
    done = cli("trace", "https://www.foobar.com/", *stack)
    assert done.returncode == 0, done.stderr
    for hop in ("client", "dns", "firewall-1", "lb-01"):
        assert f"\n{hop} " in done.stdout
    assert "ciphertext (TLS)" in done.stdout and "plaintext HTTP" in done.stdout


def test_an_unreachable_name_is_an_error_not_a_trace(stack: list[str]) -> None:
    done = cli("trace", "https://nowhere.foobar.com/", *stack)
    assert done.returncode == 1
    assert "NXDOMAIN" in done.stderr
    assert Path(stack[3]).is_dir()  # the state folder is the stack's
