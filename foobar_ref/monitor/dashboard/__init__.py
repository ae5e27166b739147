"""The live dashboard: static files served by the monitor at `/` and `/dashboard/<file>`.

The page (index.html, app.js, app.css) asks the monitor's own API from the browser
(`/api/v1/query`, `/api/v1/query_range`, `/api/v1/alerts`, `/api/v1/targets`) every few seconds and
draws its charts with uPlot, vendored under `vendor/` (see vendor/README.md), so it works with no
network beyond the monitor.  Only the files of this folder are served, read once and kept.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".md": "text/plain; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}
PREFIX = "/dashboard/"


@cache
def _files() -> dict[str, tuple[str, bytes]]:
    """Every servable file of the folder by URL path, with its content type."""
    found: dict[str, tuple[str, bytes]] = {}

    def walk(folder: Traversable, prefix: str) -> None:
        for entry in folder.iterdir():
            if entry.is_dir() and not entry.name.startswith("__"):
                walk(entry, f"{prefix}{entry.name}/")
            elif entry.is_file():
                suffix = "." + entry.name.rpartition(".")[2]
                kind = _TYPES.get(suffix) or ("text/plain; charset=utf-8" if entry.name == "LICENSE" else None)
                if kind is not None:
                    found[f"{prefix}{entry.name}"] = (kind, entry.read_bytes())

    walk(resources.files(__name__), PREFIX)
    return found


def asset(path: str) -> tuple[str, bytes] | None:
    """(content type, bytes) of the dashboard file at URL `path`, or None."""
    if path in ("/", "/index.html", "/graph", "/dashboard", PREFIX):  # /graph: where alerts' generatorURL points
        path = PREFIX + "index.html"
    return _files().get(path)
