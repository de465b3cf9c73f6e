"""Following a build: live table on a terminal, plain lines elsewhere."""

from __future__ import annotations

import sys
import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from farm.cli.client import ApiClient
from farm.domain.statuses import FINAL_BUILD, BuildStatus, JobStatus

FINAL = FINAL_BUILD
_STYLE = {
    JobStatus.SUCCESS: "green",
    JobStatus.FAILED: "red",
    JobStatus.RUNNING: "cyan",
    JobStatus.PENDING: "yellow",
    JobStatus.CANCELED: "magenta",
    JobStatus.SKIPPED: "dim",
    JobStatus.MANUAL: "blue",
    JobStatus.CREATED: "dim",
}


def _table(build: dict[str, Any]) -> Table:
    table = Table(
        title=f"build {build['id']} · {build['project']} @ {build['ref']} "
        f"({build['commit'][:8]}) · [{_STYLE.get(build['status'], '')}]"
        f"{build['status']}[/]"
    )
    for col in ("job", "stage", "status", "time", "worker"):
        table.add_column(col)
    for job in build["jobs"]:
        style = _STYLE.get(job["status"], "")
        dur = f"{job['duration']:.1f}s" if job.get("duration") is not None else ""
        table.add_row(
            job["name"], job["stage"], f"[{style}]{job['status']}[/]", dur, job.get("worker") or ""
        )
    return table


def follow(api: ApiClient, build_id: int, interval: float = 0.5) -> dict[str, Any]:
    """Show progress until the build is final (or blocked on a manual job); return it."""
    console = Console(stderr=True)
    if sys.stderr.isatty():
        build: dict[str, Any] = api.json("GET", f"/api/v1/builds/{build_id}")
        with Live(_table(build), console=console, refresh_per_second=4) as live:
            while build["status"] not in FINAL and build["status"] != BuildStatus.MANUAL:
                time.sleep(interval)
                build = api.json("GET", f"/api/v1/builds/{build_id}")
                live.update(_table(build))
        return build
    seen: dict[str, str] = {}
    while True:
        build = dict(api.json("GET", f"/api/v1/builds/{build_id}"))
        for job in build["jobs"]:
            if seen.get(job["name"]) != job["status"]:
                seen[job["name"]] = job["status"]
                extra = f" (exit {job['exit_code']})" if job.get("exit_code") else ""
                reason = f" [{job['reason']}]" if job.get("reason") else ""
                print(
                    f"build {build_id} · {job['name']}: {job['status']}{extra}{reason}",
                    file=sys.stderr,
                    flush=True,
                )
        if build["status"] in FINAL or build["status"] == BuildStatus.MANUAL:
            return build
        time.sleep(interval)


def blocked_message(build: dict[str, Any]) -> str | None:
    """For a build blocked at a manual gate: "waiting for manual job deploy" (the gates
    that hold it: manual jobs not allowed to fail); None for any other build."""
    if build.get("status") != BuildStatus.MANUAL:
        return None
    gates = [
        j["name"]
        for j in build.get("jobs", [])
        if j["status"] == JobStatus.MANUAL and not j.get("allow_failure")
    ]
    names = ", ".join(gates) or "?"
    return f"waiting for manual job{'s' if len(gates) > 1 else ''} {names}"
