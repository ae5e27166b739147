"""The web server's decisions, without I/O: which route a request takes, and the page it gets.

`route(method, target)` maps a request line to a `Route` (or an error status);
`render_home(...)` builds the HTML page that names the server that served it.
Static files are looked up by `static_file(name)` in a fixed folder with no path
components allowed, so `..` and encoded tricks can never leave it.
"""

from __future__ import annotations

import html
import mimetypes
from dataclasses import dataclass
from enum import Enum
from importlib import resources
from pathlib import Path
from urllib.parse import unquote, urlsplit

STATIC_DIR = Path(str(resources.files("foobar_ref.web") / "static"))


class Route(Enum):
    HOME = "home"
    HEALTH = "health"
    STATIC = "static"
    MESSAGES = "messages"


@dataclass(frozen=True)
class Routed:
    route: Route | None
    status: int  # 200 when routed; 404/405/400 otherwise
    detail: str = ""  # the static file name, or the store query string
    allowed: tuple[str, ...] = ()


_METHODS = {
    Route.HOME: ("GET", "HEAD"),
    Route.HEALTH: ("GET", "HEAD"),
    Route.STATIC: ("GET", "HEAD"),
    Route.MESSAGES: ("GET", "POST"),
}


def route(method: str, target: str) -> Routed:
    parts = urlsplit(target)
    path = parts.path
    if path in ("/", "/index.html"):
        found, detail = Route.HOME, ""
    elif path == "/health":
        found, detail = Route.HEALTH, ""
    elif path == "/api/messages":
        found, detail = Route.MESSAGES, parts.query
    elif path.startswith("/static/") or path in ("/robots.txt", "/favicon.ico"):
        name = unquote(path.rsplit("/", 1)[-1])
        if static_file(name) is None:
            return Routed(None, 404)
        found, detail = Route.STATIC, name
    else:
        return Routed(None, 404)
    allowed = _METHODS[found]
    if method not in allowed:
        return Routed(None, 405, allowed=allowed)
    return Routed(found, 200, detail)


def static_file(name: str) -> Path | None:
    """A file directly inside STATIC_DIR, or None: no separators, no dot-files."""
    if not name or "/" in name or "\\" in name or "\x00" in name or name.startswith("."):
        return None
    path = STATIC_DIR / name
    return path if path.is_file() else None


def content_type(path: Path) -> str:
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"{kind}; charset=utf-8" if kind.startswith("text/") else kind


@dataclass(frozen=True)
class PageFacts:
    """What the server knows about one request, shown to the learner on the page."""

    server: str
    request_id: str
    client_ip: str
    forwarded_proto: str
    peer: str
    store: str


def render_home(facts: PageFacts) -> bytes:
    e = html.escape  # every value came from the network or the config: escape it
    rows = [
        ("served by", f'<span class="server">{e(facts.server)}</span>'),
        ("request id", f"<code>{e(facts.request_id)}</code>"),
        ("your address (X-Forwarded-For)", e(facts.client_ip)),
        ("scheme at the balancer (X-Forwarded-Proto)", e(facts.forwarded_proto)),
        ("this server's peer (its firewall)", e(facts.peer)),
        ("messages stored by", e(facts.store)),
    ]
    cells = "\n".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    page = f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>www.foobar.com: {html.escape(facts.server)}</title>
<link rel="stylesheet" href="/static/style.css"></head>
<body>
<h1>www.foobar.com, served by {html.escape(facts.server)}</h1>
<p>Your request crossed DNS, firewall-1, the load balancer (where TLS ended), this server's firewall
and reached <span class="server">{html.escape(facts.server)}</span>. Reload: the balancer sends the next
request to the other server.</p>
<table>
{cells}
</table>
<p>Try the API: <code>GET /api/messages</code>, <code>POST /api/messages {{"text": "hello"}}</code>.</p>
</body>
</html>
"""
    return page.encode()
