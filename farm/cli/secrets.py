"""``farm secret``: a project's secret variables, the repository they are bound to and
its protected refs (needs an admin token).

A project's secrets reach only builds of its own repository: bind it first with ``farm
secret repo PROJECT URL`` (or ``farm secret set --repo URL`` on the first secret).  A
local path is resolved here, as ``farm submit`` resolves the one it sends.

A value is never printed and, unless ``--value`` is given, never typed on the command
line (where ``ps`` and the shell history would see it): ``farm secret set`` reads it
from standard input, without echo on a terminal, e.g. ``farm secret set shop TOKEN <
token.txt``.  One trailing newline of piped input is dropped (``echo`` adds one).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click

from farm.cli.client import ApiClient

__all__ = ["secret"]


def _base(project: str) -> str:
    # A project may be group/name: its slashes stay, anything else odd is escaped.
    return f"/api/v1/projects/{quote(project, safe='/')}"


def _repo_arg(repo: str) -> str:
    """A local path as ``farm submit`` sends it (absolute, resolved); a URL as given."""
    path = Path(repo).expanduser()
    return str(path.resolve()) if path.exists() else repo


def _read_value() -> str:
    """The value from standard input: a hidden prompt on a terminal, else all of it."""
    if sys.stdin.isatty():
        value: str = click.prompt("value", hide_input=True, confirmation_prompt=True)
        return value
    text = sys.stdin.read()
    return text[:-1] if text.endswith("\n") else text


@click.group()
def secret() -> None:
    """Set, list and remove project secrets; bind them to a repository; choose the
    protected refs."""


@secret.command("set")
@click.argument("project")
@click.argument("name")
@click.option(
    "--value", default=None, help="the value (default: read from stdin, which keeps it off ps)"
)
@click.option("--protected", is_flag=True, help="only builds of protected refs receive it")
@click.option("--no-mask", is_flag=True, help="do not mask it in job logs (short values)")
@click.option(
    "--repo",
    default=None,
    metavar="URL",
    help="bind PROJECT to this repository if it is bound to none yet",
)
@click.pass_context
def set_(
    ctx: click.Context,
    project: str,
    name: str,
    value: str | None,
    protected: bool,
    no_mask: bool,
    repo: str | None,
) -> None:
    """Create or replace secret NAME of PROJECT (bound to its repository first)."""
    if value is None:
        value = _read_value()
    body: dict[str, Any] = {"value": value, "protected": protected, "masked": not no_mask}
    if repo is not None:
        body["repo"] = _repo_arg(repo)
    resp = ApiClient(ctx.obj).request(
        "PUT", f"{_base(project)}/secrets/{quote(name, safe='')}", json=body
    )
    doc = resp.json()
    verb = "created" if resp.status_code == 201 else "updated"
    click.echo(f"{verb} secret {doc['name']} of {doc['project']} ({_flags(doc)})")


def _flags(doc: dict[str, Any]) -> str:
    return ", ".join(
        [
            "protected" if doc["protected"] else "all refs",
            "masked" if doc["masked"] else "not masked",
        ]
    )


@secret.command("ls")
@click.argument("project")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def ls(ctx: click.Context, project: str, as_json: bool) -> None:
    """PROJECT's repository and secrets: names, flags and when they changed (never values)."""
    doc = ApiClient(ctx.obj).json("GET", f"{_base(project)}/secrets")
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(f"repo: {_shown_repo(doc['repo'])}")
    for r in doc["secrets"]:
        click.echo(f"{r['name']:<32} {_flags(r):<24} updated {r['updated_at']}")


def _shown_repo(repo: str | None) -> str:
    return repo if repo is not None else "(none: no build gets these secrets)"


@secret.command("repo")
@click.argument("project")
@click.argument("url", required=False)
@click.pass_context
def repo_(ctx: click.Context, project: str, url: str | None) -> None:
    """Show PROJECT's repository, or bind its secrets to URL (a git URL or a local path).

    Only builds whose repo is this repository receive the project's secrets: a build of
    another repository with the same name gets none.
    """
    api, path = ApiClient(ctx.obj), f"{_base(project)}/repo"
    if url is None:
        doc = api.json("GET", path)
    else:
        doc = api.json("PUT", path, json={"repo": _repo_arg(url)})
    click.echo(f"{doc['project']}: {_shown_repo(doc['repo'])}")


@secret.command("rm")
@click.argument("project")
@click.argument("name")
@click.pass_context
def rm(ctx: click.Context, project: str, name: str) -> None:
    """Remove secret NAME of PROJECT."""
    ApiClient(ctx.obj).request("DELETE", f"{_base(project)}/secrets/{quote(name, safe='')}")
    click.echo(f"removed secret {name} of {project}")


@secret.command("refs")
@click.argument("project")
@click.argument("patterns", nargs=-1)
@click.option("--none", "protect_none", is_flag=True, help="protect no ref at all")
@click.option("--default", "reset", is_flag=True, help="back to the default (main, master)")
@click.pass_context
def refs(
    ctx: click.Context, project: str, patterns: tuple[str, ...], protect_none: bool, reset: bool
) -> None:
    """Show PROJECT's protected refs, or set them to PATTERNS (fnmatch: main 'release/*').

    Protected secrets reach only builds of a branch or tag matching one of them.
    """
    if sum([bool(patterns), protect_none, reset]) > 1:
        raise click.UsageError("give PATTERNS, --none or --default, not several")
    api, path = ApiClient(ctx.obj), f"{_base(project)}/protected-refs"
    if reset:
        doc = api.json("DELETE", path)
    elif patterns or protect_none:
        doc = api.json("PUT", path, json={"patterns": list(patterns)})
    else:
        doc = api.json("GET", path)
    shown = " ".join(doc["patterns"]) or "(none: no ref is protected)"
    click.echo(f"{doc['project']}: {shown}{' (default)' if doc['default'] else ''}")
