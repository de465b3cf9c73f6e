"""The one clock farm reads: timezone-aware UTC (every stored timestamp is UTC)."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Timezone-aware now; every timestamp farm stores is UTC."""
    return datetime.now(UTC)
