"""``farm schedule``: pipeline schedules (build a ref on a cron timetable).

``add`` creates one, ``ls`` lists them, ``run`` fires one now, ``pause``/``resume`` stop
and restart its timetable, ``rm`` deletes it. The farm's timer fires due schedules
(``CI_PIPELINE_SOURCE=schedule``); missed runs fire once when the farm is back.
"""

from __future__ import annotations

import json
from typing import Any

import click

from farm.cli.client import ApiClient
from farm.errors import InvalidRequest

_PATH = "/api/v1/schedules"


@click.group()
def schedule() -> None:
    """Create, list, run, pause, resume and delete pipeline schedules."""


def _line(s: dict[str, Any]) -> str:
    state = "active" if s["active"] else "paused"
    nxt = s["next_run_at"] or "-"
    last = f"build {s['last_build']}" if s["last_build"] else "no build yet"
    if s["last_error"]:
        last += f" (last run failed: {s['last_error'][:80]})"
    return (
        f"{s['id']:<5} {s['project']}  {s['ref']}  '{s['cron']}' {s['timezone']}  "
        f"{state}  next {nxt}  {last}"
    )


def _variables(pairs: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise InvalidRequest(f"--var {pair!r}: expected NAME=VALUE")
        out[name] = value
    return out


def _show(doc: dict[str, Any], as_json: bool) -> None:
    click.echo(json.dumps(doc, indent=2) if as_json else _line(doc))


@schedule.command("add")
@click.argument("repo")
@click.option("--ref", required=True, help="branch or tag to build")
@click.option("--cron", required=True, help="five fields, e.g. '0 3 * * *' (quote it)")
@click.option("--tz", "timezone", default="UTC", show_default=True, help="IANA time zone")
@click.option("--project", default=None, help="default: the repo's name")
@click.option("--description", default="", help="what the schedule is for")
@click.option("--var", "variables", multiple=True, help="NAME=VALUE, repeatable")
@click.option("--paused", is_flag=True, help="create it paused")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def add(
    ctx: click.Context,
    repo: str,
    ref: str,
    cron: str,
    timezone: str,
    project: str | None,
    description: str,
    variables: tuple[str, ...],
    paused: bool,
    as_json: bool,
) -> None:
    """Build REPO's REF on the CRON timetable."""
    body: dict[str, Any] = {
        "repo": repo,
        "ref": ref,
        "cron": cron,
        "timezone": timezone,
        "description": description,
        "variables": _variables(variables),
        "active": not paused,
    }
    if project:
        body["project"] = project
    _show(ApiClient(ctx.obj).json("POST", _PATH, json=body), as_json)


@schedule.command("ls")
@click.option("--project", default=None, help="only this project's")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def ls(ctx: click.Context, project: str | None, as_json: bool) -> None:
    """Every schedule, with its next run and last build."""
    params = {"project": project} if project else {}
    rows = ApiClient(ctx.obj).json("GET", _PATH, params=params)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(_line(row))


@schedule.command("rm")
@click.argument("schedule_id", type=int)
@click.pass_context
def rm(ctx: click.Context, schedule_id: int) -> None:
    """Delete a schedule (its builds stay)."""
    ApiClient(ctx.obj).request("DELETE", f"{_PATH}/{schedule_id}")
    click.echo(f"schedule {schedule_id} deleted")


@schedule.command("run")
@click.argument("schedule_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def run(ctx: click.Context, schedule_id: int, as_json: bool) -> None:
    """Run a schedule now (its timetable is untouched)."""
    build = ApiClient(ctx.obj).json("POST", f"{_PATH}/{schedule_id}/run")
    if as_json:
        click.echo(json.dumps(build, indent=2))
        return
    click.echo(f"build {build['id']}: {build['project']} {build['ref']} ({build['status']})")


def _set_active(ctx: click.Context, schedule_id: int, active: bool, as_json: bool) -> None:
    doc = ApiClient(ctx.obj).json("PATCH", f"{_PATH}/{schedule_id}", json={"active": active})
    _show(doc, as_json)


@schedule.command("pause")
@click.argument("schedule_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def pause(ctx: click.Context, schedule_id: int, as_json: bool) -> None:
    """Stop a schedule's timetable (``run`` still works)."""
    _set_active(ctx, schedule_id, False, as_json)


@schedule.command("resume")
@click.argument("schedule_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def resume(ctx: click.Context, schedule_id: int, as_json: bool) -> None:
    """Restart a paused schedule from now (missed slots are not made up)."""
    _set_active(ctx, schedule_id, True, as_json)
