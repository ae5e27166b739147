"""One HTTPS request through every hop, on the running stack (real processes, real MariaDB)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pymysql
import pytest

from foobar_ref.client import browser
from foobar_ref.observe.metrics import parse_exposition
from foobar_ref.runtime.admin import admin_socket_path, read_metrics
from tests.e2e.stackutil import cli, refused_or_closed

pytestmark = pytest.mark.stack


def fetch(stack: dict, path: str = "/", **kwargs: object) -> browser.Exchange:
    url = stack["url"].rstrip("/") + path
    return browser.fetch(url, topology=stack["topology_obj"], ca_file=Path(stack["ca"]), **kwargs)


def test_status_lists_every_hop_up(stack: dict) -> None:
    names = {hop["name"] for hop in stack["hops"]}
    assert {
        "dns",
        "dns-root",
        "dns-com",
        "dns-foobar",
        "firewall-1",
        "firewall-2",
        "firewall-3",
        "lb-01",
        "web-01",
        "web-02",
        "store-01",
        "store-02",
        "db-01",
        "db-02",
    } <= names
    assert all(hop["up"] and hop["pid"] > 0 for hop in stack["hops"])
    assert stack["url"] == "https://www.foobar.com/"
    assert stack["resolver"] == "127.0.3.1:53"
    lb = next(h for h in stack["hops"] if h["name"] == "lb-01")
    assert "127.0.11.1:443" in lb["listen"]


def test_get_root_is_200_and_alternates_servers(stack: dict) -> None:
    first, second = fetch(stack), fetch(stack)
    assert first.status == 200 and second.status == 200
    assert {first.served_by, second.served_by} == {"web-01", "web-02"}
    assert first.served_by.encode() in first.body
    assert first.request_id and first.request_id.encode() in first.body


def test_cli_get_verbose_prints_each_step(stack: dict) -> None:
    done = cli("get", "-v", "--state", str(stack["state_dir"]), stack["url"])
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "127.0.1.1" in out  # the DNS answer and the TCP connect
    assert "TLSv1.3" in out or "TLSv1.2" in out
    assert "200" in out
    assert "web-0" in out


def test_message_posted_is_listed_by_the_other_server(stack: dict) -> None:
    text = f"hello {uuid.uuid4()}"
    posted = fetch(stack, "/api/messages", method="POST", data=json.dumps({"text": text}).encode())
    assert posted.status == 201, posted.body
    writer = posted.served_by
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        listed = fetch(stack, "/api/messages")
        assert listed.status == 200
        texts = [m["text"] for m in json.loads(listed.body)["messages"]]
        if listed.served_by != writer and text in texts:
            return
        time.sleep(0.1)
    pytest.fail(f"message written via {writer} never listed by the other server")


def _captures(stack: dict, firewall: str) -> list:
    from foobar_ref.firewall.capture import read_capture

    return read_capture(stack["state_dir"] / "capture" / firewall)


def _is_tls_records(data: bytes) -> bool:
    """Every byte belongs to a TLS record: type 20-23, version 3.x, length-prefixed."""
    offset = 0
    while offset < len(data):
        if offset + 5 > len(data):
            return False
        kind, major, length = data[offset], data[offset + 1], int.from_bytes(data[offset + 3 : offset + 5], "big")
        if kind not in (20, 21, 22, 23) or major != 3:
            return False
        offset += 5 + length
    return offset == len(data)


def test_encryption_stops_at_the_balancer(stack: dict) -> None:
    secret = f"secret-{uuid.uuid4()}"
    posted = fetch(stack, "/api/messages", method="POST", data=json.dumps({"text": secret}).encode())
    assert posted.status == 201
    time.sleep(0.3)  # let the firewalls flush their capture files
    # the site's connections (443); firewall-1 also relays the monitor's scrapes of mon-lb-01 on 9100,
    # plaintext metrics that carry no user data (the hardened topology encrypts those too)
    edge = [c for c in _captures(stack, "firewall-1") if c.c2s and c.dst.endswith(":443")]
    assert edge, "firewall-1 recorded no connection to 443"
    for conn in edge:
        assert _is_tls_records(conn.c2s), "client->lb bytes are not TLS records"
        for plain in (b"POST /api/messages", b"GET / HTTP/1.1", b"Host:", b"www.foobar.com\r\n", secret.encode()):
            assert plain not in conn.c2s and plain not in conn.s2c
    inner = _captures(stack, "firewall-2") + _captures(stack, "firewall-3")
    relayed = b"".join(c.c2s for c in inner)
    assert b"POST /api/messages HTTP/1.1" in relayed
    assert b"x-forwarded-for: 127.0.0.10" in relayed.lower()
    assert secret.encode() in relayed


def _firewall_counter(stack: dict, firewall: str, action: str) -> float:
    text = read_metrics(admin_socket_path(stack["state_dir"], firewall))
    samples = parse_exposition(text)
    return sum(
        v
        for (name, labels), v in samples.items()
        if name == "foobar_firewall_connections_total" and dict(labels).get("action") == action
    )


def test_client_cannot_reach_web_01_directly_and_is_counted(stack: dict) -> None:
    before = _firewall_counter(stack, "firewall-2", "reject")
    assert refused_or_closed("127.0.0.10", ("127.0.2.1", 80)) == "reset"
    after = _firewall_counter(stack, "firewall-2", "reject")
    assert after == before + 1


def test_store_and_database_are_not_reachable_from_the_client(stack: dict) -> None:
    for address in [("127.0.2.1", 8100), ("127.0.2.1", 3307), ("127.0.2.2", 8100)]:
        assert refused_or_closed("127.0.0.10", address) == "reset", address
    for address in [("127.0.12.1", 8100), ("127.0.12.2", 8100), ("127.0.12.1", 80)]:
        assert refused_or_closed("127.0.0.10", address) in ("reset", "closed"), address
    with pytest.raises(pymysql.err.OperationalError) as refused:
        pymysql.connect(
            host="127.0.12.1", port=3307, user="store", password="x", bind_address="127.0.0.10", connect_timeout=3
        )
    assert refused.value.args[0] == 1130  # host is not allowed to connect


def test_balancer_cannot_reach_the_database(stack: dict) -> None:
    assert refused_or_closed("127.0.1.1", ("127.0.2.1", 3307)) in ("reset", "silent")


def test_get_with_another_ca_fails_with_a_certificate_error(stack: dict, tmp_path: Path) -> None:
    from foobar_ref import certs

    other = certs.make(tmp_path, ("www.foobar.com", "foobar.com"))
    with pytest.raises(browser.CertificateError):
        browser.fetch(stack["url"], topology=stack["topology_obj"], ca_file=other.ca_cert)
    done = cli("get", "--cacert", str(other.ca_cert), "--state", str(stack["state_dir"]), stack["url"])
    assert done.returncode == 1
    assert "certificate" in done.stderr.lower()


def test_plain_http_is_redirected_to_https(stack: dict) -> None:
    exchange = browser.fetch(
        "http://www.foobar.com/some/page", topology=stack["topology_obj"], ca_file=Path(stack["ca"])
    )
    assert exchange.status == 301
    assert exchange.header("location") == "https://www.foobar.com/some/page"


def test_firewalls_log_their_decisions_in_the_kernel_style(stack: dict) -> None:
    exchange = fetch(stack)
    local_port = exchange.tcp.local.rsplit(":", 1)[1] if exchange.tcp else ""
    log = (stack["state_dir"] / "logs" / "firewall-1.log").read_text()
    lines = [line for line in log.splitlines() if f"SPT={local_port} " in line]
    assert any("SRC=127.0.0.10" in line and "DPT=443" in line and "ACTION=accept" in line for line in lines), lines
