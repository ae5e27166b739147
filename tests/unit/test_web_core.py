"""The web server's routing and page, without sockets."""

from __future__ import annotations

import pytest

from foobar_ref.web import core


@pytest.mark.parametrize(
    ("method", "target", "route", "status"),
    [
        ("GET", "/", core.Route.HOME, 200),
        ("HEAD", "/index.html", core.Route.HOME, 200),
        ("GET", "/health", core.Route.HEALTH, 200),
        ("GET", "/static/style.css", core.Route.STATIC, 200),
        ("GET", "/robots.txt", core.Route.STATIC, 200),
        ("POST", "/api/messages", core.Route.MESSAGES, 200),
        ("GET", "/api/messages?limit=5", core.Route.MESSAGES, 200),
        ("DELETE", "/api/messages", None, 405),
        ("POST", "/", None, 405),
        ("GET", "/nope", None, 404),
        ("GET", "/static/..%2f..%2fetc%2fpasswd", None, 404),
        ("GET", "/static/%2e%2e", None, 404),
        ("GET", "/static/.hidden", None, 404),
        ("GET", "/static/a%00b", None, 404),
    ],
)
def test_route(method: str, target: str, route: core.Route | None, status: int) -> None:
    routed = core.route(method, target)
    assert (routed.route, routed.status) == (route, status)


def test_query_string_is_passed_to_the_store() -> None:
    assert core.route("GET", "/api/messages?limit=5").detail == "limit=5"


def test_page_names_the_server_and_escapes_what_came_from_the_network() -> None:
    facts = core.PageFacts("web-02", "abc123", "<script>x</script>", "https", "127.0.2.2", "store-02")
    page = core.render_home(facts).decode()
    assert "served by web-02" in page and "abc123" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
