"""The browser against tiny local servers on 127.0.54.0/24: a DNS responder and an HTTPS (h11) server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from foobar_ref import certs, topology
from foobar_ref.client import browser
from tests.client.fakes import CLIENT_IP, DNS_IP, WEB_IP, FakeDns, FakeWeb, write_topology

NAME = "www.foobar.com"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> certs.CertPaths:
    return certs.ensure(tmp_path_factory.mktemp("state"))


@pytest.fixture
def dns() -> Iterator[FakeDns]:
    with FakeDns({NAME: WEB_IP, "refused.foobar.com": "127.0.54.3"}) as server:
        yield server


@pytest.fixture
def web(site: certs.CertPaths) -> Iterator[FakeWeb]:
    with FakeWeb(site.site_cert, site.site_key) as server:
        yield server


def get(url: str, dns: FakeDns, site: certs.CertPaths, **kwargs: object) -> browser.Exchange:
    options: dict = {"resolver": dns.address, "source_ip": CLIENT_IP, "ca_file": site.ca_cert, "timeout_s": 5}
    options.update(kwargs)
    return browser.fetch(url, **options)


def test_fetch_returns_the_body_and_records_every_step(dns: FakeDns, web: FakeWeb, site: certs.CertPaths) -> None:
    exchange = get(f"https://{NAME}:{web.port}/hello?x=1", dns, site)

    assert exchange.status == 200 and exchange.reason == "OK" and exchange.http_version == "1.1"
    seen = json.loads(exchange.body)
    assert seen["target"] == "/hello?x=1" and seen["peer"] == CLIENT_IP  # the source address was bound
    assert exchange.served_by == "fake-web" and exchange.request_id == "req-1"
    assert exchange.dns is not None
    assert exchange.dns.server == f"{DNS_IP}:{dns.address[1]}"
    assert exchange.dns.rcode == "NOERROR" and exchange.dns.addresses == (WEB_IP,)
    assert any(a[2] == "A" and a[3] == WEB_IP for a in exchange.dns.answers)
    assert dns.queries == [(CLIENT_IP, NAME)]  # asked the project's resolver, from the client's address
    assert exchange.tcp.local.startswith(f"{CLIENT_IP}:") and exchange.tcp.remote == f"{WEB_IP}:{web.port}"
    assert exchange.tls is not None and exchange.tls.version in ("TLSv1.2", "TLSv1.3")
    assert NAME in exchange.tls.names and "foobar-ref local CA" in exchange.tls.issuer
    assert exchange.tls.ca_file == str(site.ca_cert)
    sent = dict(exchange.request_headers)
    assert sent["Host"] == f"{NAME}:{web.port}" and sent["User-Agent"] == "foobar-ref/0.1"
    assert sent["Connection"] == "close" and "Content-Type" not in sent
    assert 0 < exchange.tcp.connect_s <= exchange.total_s and exchange.response_s <= exchange.total_s


def test_render_prints_one_step_per_line_like_curl(dns: FakeDns, web: FakeWeb, site: certs.CertPaths) -> None:
    exchange = get(f"https://{NAME}:{web.port}/", dns, site)
    text = browser.render(exchange, verbose=True)
    lines = text.splitlines()
    assert lines[0].startswith(f"* DNS {NAME} A asked {DNS_IP}:") and "NOERROR" in lines[0]
    assert f"* Connected {CLIENT_IP}:" in text and f"-> {WEB_IP}:{web.port}" in text
    assert f"* TLS {exchange.tls.version}" in text  # type: ignore[union-attr]
    assert "> GET / HTTP/1.1" in lines and "< HTTP/1.1 200 OK" in lines
    assert "< x-served-by: fake-web" in lines
    assert lines[-1].startswith("* served by fake-web, request id req-1,")
    assert browser.render(exchange, verbose=False) == exchange.body.decode()


def test_post_sends_json_with_its_length(dns: FakeDns, web: FakeWeb, site: certs.CertPaths) -> None:
    payload = json.dumps({"text": "héllo"}).encode()
    exchange = get(f"https://{NAME}:{web.port}/api/messages", dns, site, method="post", data=payload)
    seen = json.loads(exchange.body)
    headers = {k: v for k, v in seen["headers"]}
    assert seen["method"] == "POST" and seen["body"].encode() == payload
    assert headers["content-type"] == "application/json" and headers["content-length"] == str(len(payload))
    assert "> [" in browser.render(exchange, verbose=True)


def test_a_certificate_from_another_ca_is_refused(
    dns: FakeDns, web: FakeWeb, site: certs.CertPaths, tmp_path: Path
) -> None:
    other = certs.make(tmp_path, (NAME,))
    with pytest.raises(browser.CertificateError, match="certificate of www.foobar.com .* is not trusted"):
        get(f"https://{NAME}:{web.port}/", dns, site, ca_file=other.ca_cert)
    assert web.requests == []


def test_an_ip_url_skips_dns_and_fails_the_name_check(dns: FakeDns, web: FakeWeb, site: certs.CertPaths) -> None:
    with pytest.raises(browser.CertificateError, match=f"certificate of {WEB_IP}:{web.port} does not name {WEB_IP}"):
        get(f"https://{WEB_IP}:{web.port}/", dns, site)
    assert dns.queries == []


def test_a_missing_ca_file_is_a_certificate_error(dns: FakeDns, web: FakeWeb, tmp_path: Path) -> None:
    with pytest.raises(browser.CertificateError, match="does not exist"):
        browser.fetch(f"https://{NAME}:{web.port}/", resolver=dns.address, ca_file=tmp_path / "none.crt")


def test_nxdomain_is_a_dns_error(dns: FakeDns, web: FakeWeb, site: certs.CertPaths) -> None:
    with pytest.raises(browser.DnsError, match="nope.foobar.com: NXDOMAIN"):
        get(f"https://nope.foobar.com:{web.port}/", dns, site)
    assert web.connections == []


def test_a_silent_resolver_is_a_dns_error_within_the_timeout(site: certs.CertPaths) -> None:
    with FakeDns({}, silent=True) as mute:
        started = time.monotonic()
        with pytest.raises(browser.DnsError, match=f"{NAME}: no answer from {DNS_IP}:"):
            get(f"https://{NAME}/", mute, site, timeout_s=0.5)
        assert time.monotonic() - started < 3
        assert mute.queries == [(CLIENT_IP, NAME)]


def test_a_closed_port_is_a_connect_error(dns: FakeDns, site: certs.CertPaths) -> None:
    with pytest.raises(browser.ConnectError, match=f"from {CLIENT_IP} to 127.0.54.3:9 refused"):
        get("https://refused.foobar.com:9/", dns, site)


def test_a_server_that_never_answers_is_an_http_error(dns: FakeDns, site: certs.CertPaths) -> None:
    with FakeWeb(site.site_cert, site.site_key, mode="silent") as mute:
        started = time.monotonic()
        with pytest.raises(browser.HttpError, match="no complete response .* within 0.7 s"):
            get(f"https://{NAME}:{mute.port}/", dns, site, timeout_s=0.7)
        assert time.monotonic() - started < 3


def test_a_smuggling_shaped_response_is_refused(dns: FakeDns, site: certs.CertPaths) -> None:
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    refused = pytest.raises(browser.HttpError, match="bad response .* both Transfer-Encoding and Content-Length")
    with FakeWeb(site.site_cert, site.site_key, mode="raw", raw_reply=reply) as bad, refused:
        get(f"https://{NAME}:{bad.port}/", dns, site)


def test_a_response_cut_short_is_an_http_error(dns: FakeDns, site: certs.CertPaths) -> None:
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly a few bytes"
    with FakeWeb(site.site_cert, site.site_key, mode="raw", raw_reply=reply) as bad, pytest.raises(browser.HttpError):
        get(f"https://{NAME}:{bad.port}/", dns, site)


def test_a_body_over_the_limit_is_refused(
    dns: FakeDns, web: FakeWeb, site: certs.CertPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(browser, "MAX_RESPONSE_BODY_BYTES", 10)
    with pytest.raises(browser.HttpError, match="limit 10"):
        get(f"https://{NAME}:{web.port}/", dns, site)


def test_plain_http_has_no_tls_step(dns: FakeDns) -> None:
    with FakeWeb() as plain:
        exchange = browser.fetch(f"http://{NAME}:{plain.port}/", resolver=dns.address, source_ip=CLIENT_IP)
    assert exchange.status == 200 and exchange.tls is None
    assert "no TLS" in browser.render(exchange, verbose=True)


def test_a_session_keeps_one_connection(dns: FakeDns, web: FakeWeb, site: certs.CertPaths) -> None:
    with browser.open_session(
        f"https://{NAME}:{web.port}/", resolver=dns.address, source_ip=CLIENT_IP, ca_file=site.ca_cert, timeout_s=5
    ) as session:
        exchanges = [session.request("GET", f"/n/{i}") for i in range(3)]
    assert [json.loads(e.body)["target"] for e in exchanges] == ["/n/0", "/n/1", "/n/2"]
    assert len(web.connections) == 1 and len(dns.queries) == 1
    assert [e.reused for e in exchanges] == [False, True, True]
    again = browser.render(exchanges[1], verbose=True)
    assert "* Re-using connection" in again and "* DNS not asked" in again and "* TLS" not in again


def test_a_session_retries_a_get_when_the_server_closed_the_connection(dns: FakeDns, site: certs.CertPaths) -> None:
    with (
        FakeWeb(site.site_cert, site.site_key, mode="close_after_one") as closing,
        browser.open_session(
            f"https://{NAME}:{closing.port}/", resolver=dns.address, source_ip=CLIENT_IP, ca_file=site.ca_cert
        ) as session,
    ):
        first, second = session.request(), session.request()
        with pytest.raises(browser.HttpError, match="closed"):
            session.request("POST", "/api/messages", data=b"{}")  # never replayed: not idempotent
    assert first.status == second.status == 200
    assert len(closing.connections) == 2 and len(closing.requests) == 2  # the POST was not sent again
    assert any("retried on a new connection" in note for note in second.notes)


def test_the_topology_supplies_the_resolver_and_the_source_address(
    dns: FakeDns, web: FakeWeb, site: certs.CertPaths, tmp_path: Path
) -> None:
    topo = topology.load(write_topology(tmp_path, dns.address[1], web.port))
    exchange = browser.fetch(topo.site_url, topology=topo, ca_file=site.ca_cert, timeout_s=5)
    assert json.loads(exchange.body)["peer"] == CLIENT_IP
    assert exchange.dns is not None and exchange.dns.server == f"{DNS_IP}:{dns.address[1]}"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("www.foobar.com", "did you mean https://www.foobar.com"),
        ("ftp://www.foobar.com/", "must be http or https"),
        ("https:///path", "no host name"),
        ("https://me:secret@www.foobar.com/", "passwords"),
        ("https://www.foobar.com:99999/", "out of range"),
        ("https://[::1]/", "IPv4"),
    ],
)
def test_bad_urls_are_refused_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(browser.UrlError, match=message):
        browser.fetch(url)


def test_urls_are_split_and_quoted_like_a_browser_does() -> None:
    target = browser.parse_url("HTTPS://WWW.foobar.com/a b/é?q=x y")
    assert (target.scheme, target.host, target.port) == ("https", "www.foobar.com", 443)
    assert target.path == "/a%20b/%C3%A9?q=x%20y" and target.host_header == "www.foobar.com"
    assert browser.parse_url("http://127.0.54.2:8080").path == "/"
    assert browser.parse_url("http://127.0.54.2:8080").is_ip
