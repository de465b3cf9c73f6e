"""``farm artifacts``: list and download a build's artifacts, checked by digest."""

from __future__ import annotations

import hashlib
from pathlib import Path

import click

from farm.cli.client import ApiClient
from farm.errors import DigestMismatch


@click.group()
def artifacts() -> None:
    """List and download artifacts."""


@artifacts.command("ls")
@click.argument("build_id", type=int)
@click.pass_context
def ls(ctx: click.Context, build_id: int) -> None:
    """Artifacts of every job of BUILD_ID."""
    build = ApiClient(ctx.obj).json("GET", f"/api/v1/builds/{build_id}")
    for job in build["jobs"]:
        for art in job["artifacts"]:
            click.echo(
                f"{art['digest']}  {art['size']:>10}  {job['name']}  {art['name']}  ({art['kind']})"
            )
    if build.get("deliverable"):
        click.echo(f"{build['deliverable']['digest']}  deliverable")


@artifacts.command("get")
@click.argument("digest")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True)
@click.pass_context
def get(ctx: click.Context, digest: str, output: Path) -> None:
    """Download the artifact DIGEST to OUTPUT, verifying its sha256."""
    hasher = hashlib.sha256()
    tmp = output.with_name(output.name + ".part")
    with tmp.open("wb") as fh:
        for chunk in ApiClient(ctx.obj).stream(f"/api/v1/artifacts/{digest}"):
            hasher.update(chunk)
            fh.write(chunk)
    actual = "sha256:" + hasher.hexdigest()
    if actual != digest:
        tmp.unlink(missing_ok=True)
        raise DigestMismatch(f"downloaded bytes hash to {actual}, not {digest}")
    tmp.replace(output)
    click.echo(f"{output}: {digest} verified")
