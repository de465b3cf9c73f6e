"""``farm lint``: check a pipeline file offline, print every problem as ``file:line:col``.

This is the I/O edge of the pure loader: it reads the file and the repository's file
list from disk (``git ls-files`` in a work tree, else a directory walk) and hands them to
:func:`farm.pipeline.load_pipeline` as a ``read`` callable and a ``files`` tuple, with the
farm's pipeline limits (``FARM_PIPELINE_MAX_*``) so it refuses what the API refuses.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

from farm.coordinator.submit import catalog_reader, pipeline_limits
from farm.domain.specs import Notice, Pipeline
from farm.errors import Diagnostic, PipelineError, PipelineFilteredOut
from farm.pipeline import PipelineContext, explain, find_pipeline_file, load_pipeline
from farm.pipeline.limits import check_stored_size
from farm.settings import get_settings

MAX_WALK = 200_000


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def repo_files(root: Path) -> tuple[str, ...]:
    """Paths under ``root`` (relative, ``/``-separated): git's view if a work tree, else a walk."""
    listed = _git(root, "ls-files", "--cached", "--others", "--exclude-standard")
    if listed is not None:
        return tuple(sorted({line for line in listed.splitlines() if line}))
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        rel = Path(dirpath).relative_to(root)
        for name in filenames:
            found.append((rel / name).as_posix())
            if len(found) >= MAX_WALK:
                return tuple(sorted(found))
    return tuple(sorted(found))


def make_reader(root: Path) -> Any:
    """A ``read(path) -> str | None`` confined to ``root``."""
    base = root.resolve()

    def read(path: str) -> str | None:
        target = (base / path.lstrip("/")).resolve()
        if not target.is_relative_to(base) or not target.is_file():
            return None
        return target.read_text(encoding="utf-8", errors="replace")

    return read


def current_branch(root: Path) -> str:
    for args in (("symbolic-ref", "--short", "-q", "HEAD"), ("rev-parse", "--abbrev-ref", "HEAD")):
        out = (_git(root, *args) or "").strip()
        if out and out != "HEAD":
            return out
    return "main"


def _parse_vars(values: tuple[str, ...]) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--var")
        result[key.strip()] = value
    return result


def _show(diag: Diagnostic, root: Path) -> str:
    # Relative to where the user stands when that is shorter, as compilers print paths.
    full = os.path.normpath(os.path.join(root, diag.file))
    rel = os.path.relpath(full)
    shown = rel if not rel.startswith("..") else full
    return str(Diagnostic(shown, diag.line, diag.col, diag.message))


def _show_notice(notice: Notice, root: Path) -> str:
    shown = _show(Diagnostic(notice.file, notice.line, notice.col, notice.message), root)
    file_line_col, _, message = shown.partition(": ")
    return f"{file_line_col}: warning: {message}"


def _table(pipeline: Pipeline) -> None:
    from rich.console import Console
    from rich.measure import Measurement
    from rich.table import Table

    rows = list(explain(pipeline))
    table = Table(title="pipeline", show_lines=False)
    # A job name is never cut or folded, whatever the width: it is what people search for.
    longest = max((len(str(row["name"])) for row in rows), default=3)
    table.add_column("job", no_wrap=True, min_width=longest)
    for column in ("stage", "needs", "image", "when", "allow failure", "matrix"):
        table.add_column(column, overflow="fold")
    for row in rows:
        needs = "(stage order)" if row["needs"] is None else ", ".join(row["needs"]) or "(none)"
        matrix = ", ".join(f"{k}={v}" for k, v in row["matrix"].items())
        table.add_row(
            row["name"],
            row["stage"],
            needs,
            row["image"] or "",
            row["when"],
            "yes" if row["allow_failure"] else "",
            matrix,
        )
    console = Console()
    if not console.is_terminal:  # a pipe or a file: rich would assume 80 columns
        width = Measurement.get(console, console.options.update_width(10_000), table).maximum
        console = Console(width=max(80, width))
    console.print(table)


@click.command("lint")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--explain", "show_explain", is_flag=True, help="show the jobs the pipeline creates")
@click.option("--ref", default=None, help="branch to evaluate rules for (default: current branch)")
@click.option(
    "--var", "var_items", multiple=True, metavar="K=V", help="set a variable (repeatable)"
)
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
def lint(
    file: Path | None,
    show_explain: bool,
    ref: str | None,
    var_items: tuple[str, ...],
    as_json: bool,
) -> None:
    """Check a .farm-ci.yml / .gitlab-ci.yml file; exit 1 if it has problems."""
    extra = _parse_vars(var_items)
    if file is None:
        cwd = Path.cwd()
        name = find_pipeline_file(p.name for p in cwd.iterdir() if p.is_file())
        if name is None:
            raise click.ClickException("no .farm-ci.yml or .gitlab-ci.yml in this directory")
        file = cwd / name
    root = file.resolve().parent
    try:
        text = file.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise click.ClickException(f"cannot read {file}: {exc.strerror or exc}") from None
    branch = ref or current_branch(root)
    variables = {
        "CI_COMMIT_REF_NAME": branch,
        "CI_COMMIT_BRANCH": branch,
        "CI_COMMIT_REF_SLUG": "".join(c if c.isalnum() else "-" for c in branch.lower())[:63],
        "CI_PIPELINE_SOURCE": "push",
        "CI_DEFAULT_BRANCH": "main",
        "CI_PROJECT_NAME": root.name,
        "CI_PROJECT_DIR": str(root),
        "CI": "true",
        **extra,
    }
    # The farm's own limits (FARM_PIPELINE_MAX_*), so lint refuses what the API would.
    settings = get_settings()
    limits = pipeline_limits(settings)
    catalog = settings.component_catalog
    ctx = PipelineContext(
        variables=variables,
        files=repo_files(root),
        read=make_reader(root),
        limits=limits,
        component_catalog=str(catalog) if catalog is not None else None,
        read_component=catalog_reader(catalog) if catalog is not None else None,
    )
    try:
        pipeline = load_pipeline(text, file.name, ctx)
        check_stored_size(pipeline, limits, file.name)
    except PipelineFilteredOut as exc:
        why = exc.diagnostics[0].message if exc.diagnostics else "filtered out"
        if as_json:
            click.echo(
                json.dumps({"ok": True, "filtered": why, "jobs": [], "stages": []}, indent=2)
            )
        else:
            click.echo(f"OK: valid, but for ref '{branch}' {why}")
        return
    except PipelineError as exc:
        if as_json:
            items = [{**dataclasses.asdict(d), "text": _show(d, root)} for d in exc.diagnostics]
            click.echo(json.dumps({"ok": False, "diagnostics": items}, indent=2))
        else:
            for diag in exc.diagnostics:
                click.echo(_show(diag, root))
            count = len(exc.diagnostics)
            click.echo(f"{count} problem{'s' if count != 1 else ''} found", err=True)
        sys.exit(1)
    used = [s for s in pipeline.stages if any(j.stage == s for j in pipeline.jobs)]
    if as_json:
        result = {"ok": True, "stages": used, "job_count": len(pipeline.jobs)}
        notes = [
            {**dataclasses.asdict(w), "text": _show_notice(w, root)} for w in pipeline.warnings
        ]
        click.echo(json.dumps({**result, "jobs": explain(pipeline), "warnings": notes}, indent=2))
        return
    for warning in pipeline.warnings:
        click.echo(_show_notice(warning, root), err=True)
    if show_explain:
        _table(pipeline)
    click.echo(f"OK: {len(pipeline.jobs)} jobs in {len(used)} stages")
