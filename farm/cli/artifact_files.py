"""``farm artifacts get BUILD JOB PATH``: one file out of a job's artifacts archive.

The API reads the file out of the archive (``GET /api/v1/jobs/{id}/artifacts/{path}``),
so only that file crosses the network. JOB is a job name in BUILD (``test: [3.11]``
works, quoted) or a job id.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click

from farm.cli.client import ApiClient
from farm.errors import NotFound


def job_of(build: dict[str, Any], job: str) -> dict[str, Any]:
    """The job named ``job`` in a build document, else the one with that id."""
    for item in build["jobs"]:
        if item["name"] == job:
            return dict(item)
    if job.isdigit():
        for item in build["jobs"]:
            if item["id"] == int(job):
                return dict(item)
    names = ", ".join(j["name"] for j in build["jobs"][:20])
    raise NotFound(f"build {build['id']} has no job {job!r} (jobs: {names})")


def get_file(api_url: str, build_id: str, job: str, path: str, output: Path | None) -> None:
    """Write PATH of the job's artifacts to ``output`` (default: its file name; ``-``:
    standard output)."""
    if not build_id.isdigit():
        raise click.UsageError(f"BUILD must be a build id, not {build_id!r}")
    client = ApiClient(api_url)
    found = job_of(client.json("GET", f"/api/v1/builds/{int(build_id)}"), job)
    target = output if output is not None else Path(path.rstrip("/").rsplit("/", 1)[-1])
    url = f"/api/v1/jobs/{found['id']}/artifacts/{quote(path.lstrip('/'))}"
    if str(target) == "-":
        for chunk in client.stream(url):
            sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        return
    part = target.with_name(target.name + ".part")
    size = 0
    try:
        with open(part, "wb") as out:
            for chunk in client.stream(url):
                out.write(chunk)
                size += len(chunk)
        part.replace(target)  # a failed download leaves no half-written file behind
    finally:
        part.unlink(missing_ok=True)
    click.echo(f"{target}: {path} of job {found['name']} ({size} bytes)", err=True)
