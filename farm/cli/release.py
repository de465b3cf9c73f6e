"""``farm release``: promote a green build to an immutable version, list releases."""

from __future__ import annotations

import json
from typing import Any

import click

from farm.cli.client import ApiClient


@click.group()
def release() -> None:
    """Create, list, show and delete releases (immutable versions of green builds)."""


def _line(r: dict[str, Any]) -> str:
    return (
        f"{r['project']}  {r['version']:<16} build {r['build']:<6} "
        f"{r['ref']}@{r['commit'][:12]}  {r['deliverable_digest']}  {r['created_at']}"
    )


@release.command("create")
@click.argument("build_id", type=int)
@click.option("--version", "version", required=True, help="the new version, e.g. 1.4.0")
@click.option("--project", default=None, help="must match the build's project when given")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def create(
    ctx: click.Context, build_id: int, version: str, project: str | None, as_json: bool
) -> None:
    """Release BUILD_ID as VERSION (only successful builds; versions are immutable)."""
    body: dict[str, Any] = {"build": build_id, "version": version}
    if project:
        body["project"] = project
    resp = ApiClient(ctx.obj).request("POST", "/api/v1/releases", json=body)
    doc = resp.json()
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    verb = "released" if resp.status_code == 201 else "already released"
    click.echo(
        f"{verb}: {doc['project']} {doc['version']} = build {doc['build']} ({doc['commit']})"
    )


@release.command("ls")
@click.option("--project", default=None, help="only this project")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def ls(ctx: click.Context, project: str | None, as_json: bool) -> None:
    """Releases, newest first, with their commit and build."""
    params = {"project": project} if project else {}
    rows = ApiClient(ctx.obj).json("GET", "/api/v1/releases", params=params)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(_line(r))


@release.command("show")
@click.argument("project")
@click.argument("version")
@click.pass_context
def show(ctx: click.Context, project: str, version: str) -> None:
    """One release as JSON."""
    doc = ApiClient(ctx.obj).json("GET", f"/api/v1/releases/{project}/{version}")
    click.echo(json.dumps(doc, indent=2))


@release.command("delete")
@click.argument("project")
@click.argument("version")
@click.pass_context
def delete(ctx: click.Context, project: str, version: str) -> None:
    """Delete a release nothing references (not the latest of its project)."""
    ApiClient(ctx.obj).request("DELETE", f"/api/v1/releases/{project}/{version}")
    click.echo(f"deleted release {project} {version}")
