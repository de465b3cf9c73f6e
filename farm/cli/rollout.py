"""``farm rollout``: start staged rollouts, watch them as a tree, steer them, lint plans.

Everything but ``lint`` and ``scopes import`` talks to ``/api/v1/rollouts`` and
``/api/v1/deliver`` through :class:`~farm.cli.client.ApiClient`; those two work offline on
files, over the pure :mod:`farm.rollout` package.

Exit status: API errors (a refused or raced command is a 409) print one line and exit 2
(``FarmGroup``); ``lint`` exits 1 on a bad plan. ``status``/``start`` with ``--watch``
exit 0 only when the rollout ended ``succeeded``; ``status`` without ``--watch`` exits 1
when the rollout is ``aborted`` or ``stepped_back``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text
from rich.tree import Tree

from farm.cli.client import ApiClient
from farm.errors import FarmError, InvalidRequest, NotFound, PlanError
from farm.rollout.checks import render_url
from farm.rollout.geoip import read_geolite, scopes_yaml
from farm.rollout.plan import load_plan

DEFAULT_PLAN = Path(".farm/rollout.yml")
# While a rollout is in one of these, ``--watch`` keeps watching.
NO_WRAP = 100_000  # columns of a console that is not a terminal
RUNNING = frozenset({"pending", "progressing"})
FAILED = frozenset({"aborted", "stepped_back"})

# state -> (symbol, rich style); rollouts and steps share the words where they can
ROLLOUT_LOOK: dict[str, tuple[str, str]] = {
    "pending": ("○", "dim"),
    "progressing": ("◐", "yellow"),
    "paused": ("॥", "cyan"),
    "stepped_back": ("↩", "red"),
    "succeeded": ("✔", "green"),
    "aborted": ("✖", "red"),
}
STEP_LOOK: dict[str, tuple[str, str]] = {
    "pending": ("○", "dim"),
    "waiting_approval": ("॥", "cyan"),
    "progressing": ("◐", "yellow"),
    "passed": ("✔", "green"),
    "failed": ("✖", "red"),
    "rolled_back": ("↩", "magenta"),
}
PAST_TENSE = {
    "promote": "promoted",
    "pause": "paused",
    "resume": "resumed",
    "step_back": "stepped back",
    "abort": "aborted",
}


def _default_actor() -> str:
    return os.environ.get("USER") or "cli"


ACTOR = click.option(
    "--actor",
    default=None,
    metavar="NAME",
    help="who does it, for the history (default: $USER, else 'cli')",
)
JSON = click.option("--json", "as_json", is_flag=True, help="print the rollout document as JSON")


@click.group("rollout")
def rollout() -> None:
    """Staged rollouts of releases, scope by scope (plan: .farm/rollout.yml)."""


# --- rendering -----------------------------------------------------------------------


def _look(table: dict[str, tuple[str, str]], state: str) -> tuple[str, str]:
    return table.get(state, ("?", "bold"))


def _when(value: str | None) -> datetime | None:
    """An API timestamp as an aware datetime (naive ones are UTC, as SQLite stores them)."""
    if not value:
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _clock(value: str | None) -> str:
    at = _when(value)
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if at else str(value or "")


def _seconds(value: float) -> str:
    value = max(0.0, value)
    if value < 60:
        return f"{value:.0f}s"
    minutes, secs = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _step_word(doc: dict[str, Any], index: int | None = None) -> str:
    """``step k/n (scope)``, 1-based, of ``index`` (default: the rollout's current step)."""
    steps = doc.get("steps") or []
    i = doc["step"] if index is None else index
    scope = steps[i]["scope"] if 0 <= i < len(steps) else "?"
    return f"step {i + 1}/{len(steps)} ({scope})"


def _phase(doc: dict[str, Any], now: datetime) -> str:
    """The engine's phase inside the step, with the bake time left; '' when idle."""
    phase = str(doc.get("phase") or "")
    if doc.get("state") != "progressing" or not phase or phase == "idle":
        return ""
    until = _when(doc.get("phase_until"))
    if phase == "bake" and until is not None:
        return f"bake ({_seconds((until - now).total_seconds())} left)"
    if phase == "deploy" and doc.get("deploy_job"):
        return f"deploy (job {doc['deploy_job']})"
    return phase


def _ratio(value: Any) -> str:
    try:
        return f"{round(float(value) * 100, 1):g}%"
    except (TypeError, ValueError):
        return "?"


def _figure_text(fig: dict[str, Any]) -> Text:
    """One check's figures: failures/samples, failure ratio, p95, statuses (or job status)."""
    if "error" in fig:
        return Text(f"✖ checks could not run: {fig['error']}", style="red")
    if fig.get("check") == "job":
        ok = fig.get("status") == "success"
        return Text(
            f"{'✔' if ok else '✖'} job {fig.get('job')}: {fig.get('status')}",
            style="green" if ok else "red",
        )
    failures, samples = fig.get("failures", 0), fig.get("samples", 0)
    p95 = fig.get("p95_ms")
    statuses = fig.get("statuses") or {}
    shown = ", ".join(f"{code}: {count}" for code, count in statuses.items()) or "none"
    ok = failures == 0
    text = Text(f"{'✔' if ok else '✖'} ", style="green" if ok else "red")
    text.append(
        f"{failures}/{samples} failed ({_ratio(fig.get('failure_ratio'))}) · "
        f"p95 {'-' if p95 is None else f'{p95:g} ms'} · statuses {{{shown}}}"
    )
    return text


def _check_label(check: dict[str, Any], scope: str, version: str) -> Text:
    if check.get("kind") == "job":
        return Text(f"job {check.get('job')}", style="bold")
    url = str(check.get("url"))
    with contextlib.suppress(FarmError):  # else the template as the plan wrote it
        url = render_url(url, scope, version)  # what the probes request
    text = Text("http ", style="bold")
    text.append(url)
    text.append(f" · {check.get('samples')} samples", style="dim")
    return text


def _header(doc: dict[str, Any], now: datetime) -> Text:
    symbol, style = _look(ROLLOUT_LOOK, doc["state"])
    rows: list[tuple[str, Text | str]] = [
        ("Rollout", f"{doc['id']}"),
        ("Project", doc["project"]),
        ("Version", doc["version"]),
        ("Previous", doc.get("previous_version") or "(none)"),
        ("Status", Text(f"{symbol} {doc['state']}", style=f"bold {style}")),
        ("Step", f"{doc['step'] + 1}/{len(doc.get('steps') or [])}"),
    ]
    phase = _phase(doc, now)
    if phase:
        rows.append(("Phase", phase))
    if doc.get("reason"):
        rows.append(("Reason", doc["reason"]))
    if doc.get("actor"):
        rows.append(("Started by", f"{doc['actor']} at {_clock(doc.get('created_at'))}"))
    out = Text()
    for i, (name, value) in enumerate(rows):
        out.append(f"{name + ':':<12}", style="bold")
        out.append(value)
        if i < len(rows) - 1:
            out.append("\n")
    return out


def render(doc: dict[str, Any], now: datetime | None = None) -> RenderableType:
    """The status tree of a rollout document (header, then one branch per step)."""
    now = now or datetime.now(UTC)
    latest = doc.get("checks") or {}
    tree = Tree(Text(f"rollout {doc['id']} · {doc['project']} {doc['version']}", style="bold"))
    for step in doc.get("steps") or []:
        symbol, style = _look(STEP_LOOK, step["state"])
        label = Text(f"{symbol} ", style=style)
        label.append(f"step {step['index'] + 1}", style="bold")
        label.append(f"  {step['scope']}")
        label.append(f"  → {step.get('version') or '(none)'}", style="bold")
        cidrs = step.get("cidrs", 0)
        where = "everyone" if step["scope"] == "all" else f"{cidrs} CIDR{'s' * (cidrs != 1)}"
        label.append(f"  {where}  ", style="dim")
        label.append(step["state"], style=style)
        if step.get("approve") == "manual":
            label.append("  (manual approval)", style="dim")
        branch = tree.add(label)
        measured = latest.get("step") == step["index"]
        figures: list[dict[str, Any]] = list(latest.get("checks") or []) if measured else []
        for n, check in enumerate(step.get("checks") or []):
            node = branch.add(_check_label(check, step["scope"], doc["version"]))
            if n < len(figures):
                node.add(_figure_text(figures[n]))
        if measured:
            for fig in figures[len(step.get("checks") or []) :]:
                branch.add(_figure_text(fig))  # e.g. {"error": ...}: no check to hang it on
            if "error" in latest:
                branch.add(_figure_text(latest))
            if latest.get("reason"):
                verdict = "passed" if latest.get("passed") else "failed"
                branch.add(
                    Text(
                        f"checks of attempt {latest.get('attempt')} {verdict}: {latest['reason']}",
                        style="green" if latest.get("passed") else "red",
                    )
                )
    return Group(_header(doc, now), Text(""), tree)


def _console() -> Console:
    """A terminal's console, or one that never wraps nor crops (pipes, files, CI logs)."""
    console = Console()
    return console if console.is_terminal else Console(width=NO_WRAP)


def _print_tree(console: Console, doc: dict[str, Any]) -> None:
    console.print(render(doc))


def _summary(doc: dict[str, Any]) -> str:
    """``rollout 7 (shop 1.1.0): stepped_back at step 1/3 (canada): <reason>``."""
    line = f"rollout {doc['id']} ({doc['project']} {doc['version']}): {doc['state']}"
    line += f" at {_step_word(doc)}"
    return line + (f": {doc['reason']}" if doc.get("reason") else "")


def _exit_for(doc: dict[str, Any], watched: bool) -> None:
    failed = doc["state"] != "succeeded" if watched else doc["state"] in FAILED
    if failed:
        sys.exit(1)


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


# --- talking to the API --------------------------------------------------------------


def _client(ctx: click.Context) -> ApiClient:
    return ApiClient(ctx.obj)


def _rollout_id(api: ApiClient, ref: str) -> int:
    """A rollout id, or a project name standing for its newest rollout."""
    if ref.isdigit():
        return int(ref)
    rows = api.json("GET", "/api/v1/rollouts", params={"project": ref, "limit": 1})
    if not rows:
        raise NotFound(f"{ref!r} is neither a rollout id nor a project with rollouts")
    return int(rows[0]["id"])


def _get(api: ApiClient, rollout_id: int) -> dict[str, Any]:
    doc: dict[str, Any] = api.json("GET", f"/api/v1/rollouts/{rollout_id}")
    return doc


def watch(
    api: ApiClient,
    rollout_id: int,
    *,
    interval: float,
    as_json: bool,
) -> dict[str, Any]:
    """Follow a rollout until it is no longer pending/progressing; the last document.

    On a terminal the tree is redrawn in place (rich Live); otherwise a line is printed
    whenever the state, step, attempt or phase changes, and the tree once at the end.
    With ``as_json`` the lines go to stderr and the final document is printed as JSON.
    """
    console = _console()
    doc = _get(api, rollout_id)
    if console.is_terminal and not as_json:
        with Live(render(doc), console=console, refresh_per_second=4) as live:
            while doc["state"] in RUNNING:
                time.sleep(interval)
                doc = _get(api, rollout_id)
                live.update(render(doc))
        return doc
    seen: tuple[Any, ...] | None = None
    while True:
        key = (doc["state"], doc["step"], doc.get("attempt"), doc.get("phase"))
        if key != seen:
            seen = key
            phase = _phase(doc, datetime.now(UTC))
            line = f"{_clock(datetime.now(UTC).isoformat())}  {_summary(doc)}"
            click.echo(line + (f" · {phase}" if phase else ""), err=as_json)
        if doc["state"] not in RUNNING:
            break
        time.sleep(interval)
        doc = _get(api, rollout_id)
    if as_json:
        _echo_json(doc)
    else:
        click.echo()
        _print_tree(console, doc)
    return doc


# --- commands ------------------------------------------------------------------------


WATCH = click.option(
    "--watch",
    "-w",
    "watch_",
    is_flag=True,
    help="follow until it ends; exit 0 only if it succeeded",
)
INTERVAL = click.option(
    "--interval",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0.05, 60),
    help="seconds between polls with --watch",
)


@rollout.command("start")
@click.argument("project")
@click.argument("version")
@WATCH
@INTERVAL
@JSON
@ACTOR
@click.pass_context
def start(
    ctx: click.Context,
    project: str,
    version: str,
    watch_: bool,
    interval: float,
    as_json: bool,
    actor: str | None,
) -> None:
    """Roll VERSION of PROJECT out by the plan in its commit (409 while one is active)."""
    body = {"project": project, "version": version, "actor": actor or _default_actor()}
    with _client(ctx) as api:
        doc: dict[str, Any] = api.json("POST", "/api/v1/rollouts", json=body)
        over = f" over {doc['previous_version']}" if doc.get("previous_version") else ""
        click.echo(
            f"rollout {doc['id']} started: {doc['project']} {doc['version']}{over}, "
            f"{len(doc['steps'])} steps; now {doc['state']} at {_step_word(doc)}",
            err=True,
        )
        if watch_:
            doc = watch(api, doc["id"], interval=interval, as_json=as_json)
            _exit_for(doc, watched=True)
            return
    if as_json:
        _echo_json(doc)
    else:
        click.echo(doc["id"])


@rollout.command("status")
@click.argument("rollout_ref", metavar="ROLLOUT")
@WATCH
@INTERVAL
@JSON
@click.pass_context
def status(
    ctx: click.Context, rollout_ref: str, watch_: bool, interval: float, as_json: bool
) -> None:
    """Show ROLLOUT (an id, or a project for its newest rollout) as a tree.

    Exit status: with --watch, 0 only if the rollout succeeded; without, 1 when it is
    aborted or stepped back.
    """
    with _client(ctx) as api:
        rid = _rollout_id(api, rollout_ref)
        if watch_:
            doc = watch(api, rid, interval=interval, as_json=as_json)
        else:
            doc = _get(api, rid)
            if as_json:
                _echo_json(doc)
            else:
                _print_tree(_console(), doc)
    _exit_for(doc, watched=watch_)


def _action(name: str, help_text: str, has_full: bool = False) -> click.Command:
    @click.argument("rollout_ref", metavar="ROLLOUT")
    @click.option("--reason", default="", metavar="TEXT", help="why, for the history")
    @ACTOR
    @JSON
    @click.pass_context
    def command(
        ctx: click.Context,
        rollout_ref: str,
        reason: str,
        actor: str | None,
        as_json: bool,
        full: bool = False,
    ) -> None:
        body = {"actor": actor or _default_actor(), "reason": reason, "full": full}
        with _client(ctx) as api:
            rid = _rollout_id(api, rollout_ref)
            path = f"/api/v1/rollouts/{rid}/{name.replace('_', '-')}"
            doc: dict[str, Any] = api.json("POST", path, json=body)
        if as_json:
            _echo_json(doc)
            return
        verb = "promoted to the last step" if full else PAST_TENSE[name]
        click.echo(f"{verb}: {_summary(doc)}")

    if has_full:
        command = click.option(
            "--full", is_flag=True, help="to the last step at once (its checks still run)"
        )(command)
    command.__doc__ = help_text
    return click.command(name.replace("_", "-"))(command)


rollout.add_command(
    _action("promote", "Start the next step now (this approves a manual one).", has_full=True)
)
rollout.add_command(_action("pause", "Hold a progressing rollout; live scopes stay live."))
rollout.add_command(
    _action("resume", "Continue a paused rollout (the step bakes and checks again).")
)
rollout.add_command(
    _action("step_back", "Take the highest live scope back; hold at the one below.")
)
rollout.add_command(_action("abort", "Give up: the previous release serves everyone again."))


@rollout.command("history")
@click.argument("rollout_ref", metavar="ROLLOUT")
@click.option("--json", "as_json", is_flag=True, help="print the events as JSON")
@click.pass_context
def history(ctx: click.Context, rollout_ref: str, as_json: bool) -> None:
    """Every transition of ROLLOUT: when, who, what, from → to, why."""
    with _client(ctx) as api:
        rid = _rollout_id(api, rollout_ref)
        events: list[dict[str, Any]] = api.json("GET", f"/api/v1/rollouts/{rid}/history")
    if as_json:
        _echo_json(events)
        return
    for e in events:
        moved = f"{e['from']} (step {e['from_step'] + 1}) → {e['to']} (step {e['to_step'] + 1})"
        reason = f"  {e['reason']}" if e.get("reason") else ""
        click.echo(f"{_clock(e['at'])}  {e['actor']:<14} {e['event']:<14} {moved}{reason}")


@rollout.command("ls")
@click.option("--project", default=None, help="only this project")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 500))
@click.option("--json", "as_json", is_flag=True, help="print the rollouts as JSON")
@click.pass_context
def ls(ctx: click.Context, project: str | None, limit: int, as_json: bool) -> None:
    """Rollouts, newest first, one line each."""
    params: dict[str, Any] = {"limit": limit}
    if project:
        params["project"] = project
    with _client(ctx) as api:
        rows: list[dict[str, Any]] = api.json("GET", "/api/v1/rollouts", params=params)
    if as_json:
        _echo_json(rows)
        return
    for r in rows:
        symbol = _look(ROLLOUT_LOOK, r["state"])[0]
        click.echo(
            f"{r['id']:>6}  {r['project']:<20} {r['version']:<16} {symbol} {r['state']:<13} "
            f"{_step_word(r):<24} over {r.get('previous_version') or '-':<12} "
            f"{_clock(r.get('created_at'))}"
        )


# --- offline: plans and scopes -------------------------------------------------------


def _display_path(path: Path) -> str:
    rel = os.path.relpath(path)
    return str(path) if rel.startswith("..") else rel


@rollout.command("lint")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
def lint(file: Path | None, as_json: bool) -> None:
    """Check a rollout plan (default .farm/rollout.yml) offline; exit 1 if it has problems."""
    path = file or DEFAULT_PLAN
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        plan = load_plan(text, _display_path(path))
    except PlanError as exc:
        if as_json:
            items = [{**dataclasses.asdict(d), "text": str(d)} for d in exc.diagnostics]
            _echo_json({"ok": False, "diagnostics": items})
        else:
            for diag in exc.diagnostics:
                click.echo(str(diag))
            count = len(exc.diagnostics)
            click.echo(f"{count} problem{'s' if count != 1 else ''} found", err=True)
        sys.exit(1)
    scopes, steps = len(plan.scopes), len(plan.steps)
    if as_json:
        _echo_json(
            {
                "ok": True,
                "scopes": scopes,
                "steps": [s.scope for s in plan.steps],
                "cidrs": sum(len(c) for c in plan.scopes.values()),
                "deploy_job": plan.deploy_job,
                "auto_branches": list(plan.auto_branches),
            }
        )
        return
    click.echo(f"ok: {scopes} scope{'s' * (scopes != 1)}, {steps} step{'s' * (steps != 1)}")


@rollout.group("scopes")
def scopes() -> None:
    """Make plan scopes from other data."""


def _scope_option(values: Sequence[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in values:
        name, sep, codes = item.partition("=")
        isos = [c.strip() for c in codes.split(",") if c.strip()]
        if not sep or not name.strip() or not isos:
            raise click.BadParameter(f"{item!r} is not NAME=ISO[,ISO...]", param_hint="--scope")
        if name.strip() in out:
            raise click.BadParameter(f"scope {name.strip()!r} given twice", param_hint="--scope")
        out[name.strip()] = isos
    return out


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from None


@scopes.command("import")
@click.argument(
    "blocks",
    nargs=-1,
    required=True,
    metavar="BLOCKS_CSV...",
    type=click.Path(dir_okay=False, path_type=Path),
)
@click.option(
    "--locations",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="GeoLite2-Country-Locations-en.csv",
)
@click.option(
    "--scope",
    "scope_items",
    multiple=True,
    required=True,
    metavar="NAME=ISO[,ISO...]",
    help="a scope and its countries, e.g. canada=CA (repeatable)",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="write the YAML here instead of printing it",
)
def import_(
    blocks: tuple[Path, ...], locations: Path, scope_items: tuple[str, ...], output: Path | None
) -> None:
    """Turn MaxMind GeoLite2 Country CSVs into the scopes: of .farm/rollout.yml.

    BLOCKS_CSV... are the GeoLite2-Country-Blocks-IPv4/-IPv6 files; each --scope names
    the countries (ISO codes) it holds. Networks of one scope are merged.
    """
    countries = _scope_option(scope_items)
    result = read_geolite([_read(p) for p in blocks], _read(locations), countries)
    for name, cidrs in result.items():
        if not cidrs:
            click.echo(
                f"warning: scope '{name}' has no networks in these files; a plan refuses it",
                err=True,
            )
    text = scopes_yaml(result)
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"cannot write {output}: {exc.strerror or exc}") from None
    total = sum(len(c) for c in result.values())
    click.echo(f"wrote {len(result)} scopes ({total} CIDRs) to {output}", err=True)


# --- the data plane ------------------------------------------------------------------


def _project_path(project: str) -> str:
    if not project or project.startswith("/"):
        raise InvalidRequest(f"{project!r} is not a project name")
    return quote(project, safe="/")


@rollout.command("nginx-geo")
@click.argument("project")
@click.pass_context
def nginx_geo(ctx: click.Context, project: str) -> None:
    """Print an nginx geo block that routes PROJECT's clients as the farm does."""
    with _client(ctx) as api:
        text = api.request("GET", f"/api/v1/deliver/{_project_path(project)}/nginx-geo").text
    click.echo(text, nl=not text.endswith("\n"))


@rollout.command("deliver")
@click.argument("project")
@click.option("--ip", default=None, metavar="ADDR", help="the client address (default: yours)")
@click.option("--json", "as_json", is_flag=True, help="print the answer as JSON")
@click.pass_context
def deliver(ctx: click.Context, project: str, ip: str | None, as_json: bool) -> None:
    """Which version of PROJECT an address gets (and the artifacts to fetch)."""
    params = {"ip": ip} if ip else {}
    with _client(ctx) as api:
        doc: dict[str, Any] = api.json(
            "GET", f"/api/v1/deliver/{_project_path(project)}", params=params
        )
    if as_json:
        _echo_json(doc)
        return
    scope = f"scope {doc['scope']}" if doc.get("scope") else "no live scope"
    via = f", rollout {doc['rollout']}" if doc.get("rollout") is not None else ""
    click.echo(
        f"{doc['project']} {doc.get('version') or '(none)'} for {doc.get('address')} ({scope}{via})"
    )
    for art in doc.get("artifacts") or []:
        click.echo(f"  {art['name']:<24} {art['digest']}  {art['url']}")
