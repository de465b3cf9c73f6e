"""Rendering the dashboard's templates: one Jinja2 environment, its filters, safe headers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from farm import __version__
from farm.domain.clock import format_duration

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")  # autoescapes .html

# Shown next to every status word, so a status never depends on colour alone.
ICONS = {
    "success": "✔",
    "failed": "✖",
    "running": "●",
    "pending": "◌",
    "created": "○",
    "canceled": "⊘",
    "skipped": "↷",
    "manual": "▶",
    "progressing": "●",
    "paused": "⏸",
    "succeeded": "✔",
    "stepped_back": "↩",
    "aborted": "✖",
    "passed": "✔",
}

# The page loads no script or style from anywhere else and nothing inline but the graph's
# computed positions (style attributes): an injected <script> in a log could not run.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)


def when(value: datetime | None) -> str:
    """A timestamp as ``2026-11-29 17:12:33Z`` (UTC), or a dash."""
    if value is None:
        return "—"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def iso(value: datetime | None) -> str:
    """ISO 8601 (for ``<time datetime>``), or ''."""
    if value is None:
        return ""
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def span(start: datetime | None, end: datetime | None) -> float | None:
    """Seconds from ``start`` to ``end`` (now while it still runs), or None if not started."""
    if start is None:
        return None
    start = start if start.tzinfo else start.replace(tzinfo=UTC)
    stop = end or datetime.now(UTC)
    stop = stop if stop.tzinfo else stop.replace(tzinfo=UTC)
    return max(0.0, (stop - start).total_seconds())


def duration(seconds: float | None) -> str:
    """``4.2s``, ``3m 07s``, ``2h 05m``; a dash when unknown."""
    return format_duration(seconds, gap=" ", unknown="—")


def size(n: int | None) -> str:
    """Bytes in binary units (``12.0 KiB``)."""
    if n is None:
        return "—"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover  (the loop always returns)


def short(digest: str | None, n: int = 12) -> str:
    """``sha256:0123456789ab…`` for tables (the full digest stays in a title and links)."""
    if not digest:
        return "—"
    algo, _, hexa = digest.partition(":")
    return f"{algo}:{hexa[:n]}…" if hexa else digest[:n]


templates.env.filters.update(when=when, iso=iso, duration=duration, size=size, short=short)
templates.env.globals.update(icons=ICONS, span=span, version=__version__)


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render template ``name`` with the page's common context (Flower's address, auth)."""
    settings = request.app.state.settings
    response = templates.TemplateResponse(
        request,
        name,
        {
            "flower_url": f"http://127.0.0.1:{settings.flower_port}",
            "auth_on": bool(settings.auth),
            **context,
        },
        status_code=status_code,
    )
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"  # live data, maybe behind a cookie
    return response
