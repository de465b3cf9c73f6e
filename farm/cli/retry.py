"""``farm retry`` and ``farm builds``: GitLab's Retry button and pipeline list.

``farm retry JOB`` retries one failed or canceled job; ``farm retry --build BUILD``
every failed and canceled job of a build (the two ids live in different spaces, so
the option says which one is meant rather than guessing).
"""

from __future__ import annotations

import json

import click

from farm.cli.client import ApiClient
from farm.cli.jobs_view import build_rows
from farm.domain.statuses import BuildStatus


@click.command()
@click.argument("job_id", type=int, required=False)
@click.option("--build", "build_id", type=int, default=None, help="retry this build's jobs")
@click.pass_context
def retry(ctx: click.Context, job_id: int | None, build_id: int | None) -> None:
    """Run a failed or canceled JOB again (or every one of --build BUILD) as a new attempt;
    the jobs it skipped run again too. Earlier attempts' logs stay (``farm logs``)."""
    if (job_id is None) == (build_id is None):
        raise click.UsageError("give a JOB id, or --build BUILD (not both)")
    api = ApiClient(ctx.obj)
    if job_id is not None:
        job = api.json("POST", f"/api/v1/jobs/{job_id}/retry")
        click.echo(f"job {job['id']} ({job['name']}): {job['status']}, attempt {job['attempt']}")
        return
    build = api.json("POST", f"/api/v1/builds/{build_id}/retry")
    again = [j["name"] for j in build["jobs"] if j["status"] in ("created", "pending")]
    click.echo(f"build {build['id']}: {build['status']} ({len(again)} job(s) to run again)")


@click.command()
@click.option("--project", default=None, help="only this project")
@click.option("--ref", default=None, help="only builds of this branch or tag")
@click.option(
    "--status",
    type=click.Choice([s.value for s in BuildStatus]),
    default=None,
    help="only builds in this status",
)
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0, help="skip the newest N")
@click.option("--json", "as_json", is_flag=True, help="print the list as JSON")
@click.pass_context
def builds(
    ctx: click.Context,
    project: str | None,
    ref: str | None,
    status: str | None,
    limit: int,
    offset: int,
    as_json: bool,
) -> None:
    """List builds, newest first."""
    params = {"project": project, "ref": ref, "status": status, "limit": limit, "offset": offset}
    query = {k: v for k, v in params.items() if v is not None}
    rows = ApiClient(ctx.obj).json("GET", "/api/v1/builds", params=query)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for line in build_rows(rows):
        click.echo(line)
