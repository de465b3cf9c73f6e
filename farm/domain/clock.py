"""The one clock farm reads: timezone-aware UTC (every stored timestamp is UTC)."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Timezone-aware now; every timestamp farm stores is UTC."""
    return datetime.now(UTC)


def format_duration(seconds: float | None, *, gap: str = "", unknown: str = "") -> str:
    """``4.2s``, ``3m07s``, ``2h05m`` (``gap`` between the units, e.g. ``" "``);
    ``unknown`` when there is no figure."""
    if seconds is None:
        return unknown
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{gap}{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{gap}{minutes:02d}m"
