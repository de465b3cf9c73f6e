"""``farm workers``: the farm's workers, from their heartbeats (``GET /api/v1/workers``).

Each line: name, host, tags, slots busy/total, the jobs it runs, seconds since its last
heartbeat. ``--all`` adds workers silent longer than FARM_WORKER_TIMEOUT (last day).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click

from farm.cli.client import ApiClient


def _age(iso: str) -> str:
    seen = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    if seen.tzinfo is None:
        seen = seen.replace(tzinfo=UTC)
    return f"{max(0.0, (datetime.now(UTC) - seen).total_seconds()):.0f}s ago"


def _line(w: dict[str, Any]) -> str:
    tags = ",".join(w["tags"]) or "-"
    jobs = ",".join(str(j) for j in w["running"]) or "-"
    state = "" if w.get("alive", True) else "  (silent)"
    return (
        f"{w['name']:<28} {w['host']:<20} tags {tags:<16} "
        f"slots {len(w['running'])}/{w['slots']}  jobs {jobs:<12} "
        f"seen {_age(w['last_seen'])}{state}"
    )


@click.command()
@click.option("--all", "show_all", is_flag=True, help="also workers no longer sending heartbeats")
@click.option("--json", "as_json", is_flag=True, help="print the list as JSON")
@click.pass_context
def workers(ctx: click.Context, show_all: bool, as_json: bool) -> None:
    """List the workers: host, tags, slots, running jobs, last heartbeat."""
    rows = ApiClient(ctx.obj).json("GET", "/api/v1/workers", params={"all": show_all})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no live workers" + ("" if show_all else " (--all shows silent ones)"))
        return
    for w in rows:
        click.echo(_line(w))
