"""``farm gc``: sweep blobs that nothing references (runs in the API, which owns the store)."""

from __future__ import annotations

import json

import click

from farm.cli.client import ApiClient


@click.command("gc")
@click.option("--dry-run", is_flag=True, help="only report what would be swept")
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=None,
    help="keep unreferenced blobs younger than this many seconds (default: the farm's, 1 h)",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def gc(ctx: click.Context, dry_run: bool, grace: float | None, as_json: bool) -> None:
    """Delete unreferenced blobs older than the grace window; report count and bytes."""
    params: dict[str, str] = {"dry_run": "true" if dry_run else "false"}
    if grace is not None:
        params["grace"] = str(grace)
    report = ApiClient(ctx.obj, timeout=3600).json("POST", "/api/v1/admin/gc", params=params)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    verb = "would sweep" if report["dry_run"] else "swept"
    click.echo(
        f"{verb} {report['swept']} blob(s), {report['swept_bytes']} bytes; "
        f"kept {report['referenced']} referenced and {report['young']} younger than "
        f"{report['grace_seconds']:g}s ({report['scanned']} scanned)"
    )
