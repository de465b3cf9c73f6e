"""``farm status --timings``: where each job's time went (farm/domain/timeline.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from farm.domain.timeline import SLICES, overhead, slices


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def show_timings(build: Mapping[str, Any]) -> None:
    """One line per job: milliseconds in each slice, and what the farm added."""
    names = [name for name, _, _ in SLICES]
    head = "  ".join(f"{n:>8}" for n in names)
    click.echo(f"{'job':<30} {'status':<8} {head}  {'farm+':>8}  (ms)")
    for job in build.get("jobs", []):
        marks = job.get("timeline") or {}
        status = "cached" if job.get("cached") else str(job.get("status", ""))
        parts = slices(marks)
        cells = "  ".join(f"{_ms(parts.get(n)):>8}" for n in names)
        click.echo(f"{str(job['name'])[:30]:<30} {status:<8} {cells}  {_ms(overhead(marks)):>8}")
