"""``farm``: run the farm and talk to it. Errors print one line and exit non-zero."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from farm.cli import artifacts as artifacts_cmd
from farm.cli.client import ApiClient, api_base_url
from farm.cli.gc import gc as gc_cmd
from farm.cli.jobs_view import job_lines
from farm.cli.lint import lint
from farm.cli.logs import logs as logs_cmd
from farm.cli.open import open_cmd
from farm.cli.progress import blocked_message, follow
from farm.cli.release import release as release_cmd
from farm.cli.retry import builds as builds_cmd
from farm.cli.retry import retry as retry_cmd
from farm.cli.rollout import rollout as rollout_cmd
from farm.cli.schedule import schedule as schedule_cmd
from farm.cli.secrets import secret as secret_cmd
from farm.cli.services import api_healthy, farm_argv, pidfile, read_pid, serve, stop_pid
from farm.cli.services import ps as ps_cmd
from farm.cli.supervise import state_path
from farm.cli.timings import show_timings
from farm.cli.tokens import token as token_cmd
from farm.cli.workers import workers as workers_cmd
from farm.domain.statuses import BuildStatus
from farm.errors import FarmError
from farm.settings import get_settings


class FarmGroup(click.Group):
    """A group that turns every FarmError into one line on stderr and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FarmError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=FarmGroup)
@click.option(
    "--api",
    "api_url",
    envvar="FARM_API_URL",
    default=None,
    help="farm API base URL (default http://127.0.0.1:8700)",
)
@click.version_option(package_name="farm")
@click.pass_context
def cli(ctx: click.Context, api_url: str | None) -> None:
    """farm: a distributed build farm for GitLab-CI-compatible pipelines."""
    ctx.obj = api_base_url(api_url or get_settings().resolved_api_url)


def _api(ctx: click.Context) -> ApiClient:
    return ApiClient(ctx.obj)


# --- running the farm ----------------------------------------------------------------


@cli.command()
@click.option("--workers", default=2, show_default=True, help="worker processes")
@click.option("--concurrency", default=1, show_default=True, help="jobs at once per worker")
@click.option("--port", type=int, default=None, help="API port (default 8700)")
@click.option("--flower-port", type=int, default=None, help="Flower port (default 5555)")
@click.option("--no-flower", is_flag=True, help="do not start Flower")
@click.option("--detach", is_flag=True, help="run in the background; `farm down` stops it")
def up(
    workers: int,
    concurrency: int,
    port: int | None,
    flower_port: int | None,
    no_flower: bool,
    detach: bool,
) -> None:
    """Run the whole farm on this machine: Redis, API + coordinator, workers, Flower."""
    if port:
        os.environ["FARM_API_PORT"] = str(port)
    if flower_port:
        os.environ["FARM_FLOWER_PORT"] = str(flower_port)
    get_settings.cache_clear()
    settings = get_settings()
    if detach:
        _detach(settings.data_dir, workers, concurrency, no_flower)
        return
    # Supervised: a child that dies is restarted with backoff; a crash loop exits 2.
    serve(settings, workers, concurrency, not no_flower)


def _detach(data_dir: Path, workers: int, concurrency: int, no_flower: bool) -> None:
    settings = get_settings()
    if read_pid(settings) and api_healthy(settings.resolved_api_url):
        click.echo(f"farm is already running: API {settings.resolved_api_url}", err=True)
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "logs").mkdir(exist_ok=True)
    args = ["up", "--workers", str(workers), "--concurrency", str(concurrency)]
    if no_flower:
        args.append("--no-flower")
    with open(data_dir / "logs" / "farm-up.log", "ab") as out:
        proc = subprocess.Popen(
            farm_argv(*args),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = data_dir / "logs" / "farm-up.log"
            last = log.read_text(errors="replace").strip().rpartition("\n")[2]
            if last.startswith("error: "):  # one line that names the cause and its log
                raise FarmError(last.removeprefix("error: "))
            raise FarmError(f"farm up exited; see {log}")
        if api_healthy(settings.resolved_api_url) and read_pid(settings):
            click.echo(
                f"farm is up in the background (pid {proc.pid}): API "
                f"{settings.resolved_api_url}"
                + ("" if no_flower else f" · Flower http://127.0.0.1:{settings.flower_port}")
                + f" · logs in {data_dir / 'logs'} · stop with `farm down`",
                err=True,
            )
            return
        time.sleep(0.3)
    raise FarmError("farm up did not become healthy within 120 s")


@cli.command()
def down() -> None:
    """Stop a farm started with `farm up --detach`: its children first, then itself."""
    settings = get_settings()
    pid = read_pid(settings)
    if pid is None:
        state_path(settings.data_dir).unlink(missing_ok=True)
        click.echo("farm is not running", err=True)
        return
    if not stop_pid(pid):
        raise FarmError(f"farm (pid {pid}) did not stop within 60 s")
    pidfile(settings).unlink(missing_ok=True)
    state_path(settings.data_dir).unlink(missing_ok=True)
    click.echo("farm stopped", err=True)


@cli.command()
@click.option("--host", default=None)
@click.option("--port", type=int, default=None)
def api(host: str | None, port: int | None) -> None:
    """Run the API and coordinator only (for multi-host installs)."""
    import uvicorn

    from farm.api.app import create_app

    settings = get_settings()
    if host:  # the exposure check must see the address actually bound
        settings = settings.model_copy(update={"api_host": host})
    # A request that waits on the database gives up the GIL and then waits up to the
    # switch interval (5 ms) for each busy thread (a big submit, workers' reports) before
    # it runs again; at 1 ms a small request is not made to queue behind a big one.
    sys.setswitchinterval(0.001)
    app = create_app(settings)
    # The cyclic GC stops every thread while it runs: a full pass over the objects of a
    # 10,000-job submit took ~150 ms, several times per submit, stalling every other
    # request. What start-up made is never garbage (freeze it out of every pass), and
    # passes are made rarer; reference counting still frees almost everything at once.
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    uvicorn.run(
        app,
        host=settings.api_host,
        port=port or settings.api_port,
        log_level=settings.log_level.lower(),
        access_log=False,
    )


@cli.command()
@click.option("--queues", "-Q", default=None, help="comma-separated queues (default: by tags)")
@click.option("--tags", default=None, help="comma-separated worker tags (FARM_WORKER_TAGS)")
@click.option("--concurrency", "-c", default=1, show_default=True, help="jobs at once")
@click.option("--name", default=None, help="worker name (default: host name)")
@click.option(
    "--pool",
    default="threads",
    show_default=True,
    type=click.Choice(["threads", "prefork", "solo"]),
)
@click.option(
    "--run-untagged/--no-run-untagged",
    default=None,
    help="a tagged worker also takes untagged jobs (FARM_WORKER_RUN_UNTAGGED; default no)",
)
def worker(
    queues: str | None,
    tags: str | None,
    concurrency: int,
    name: str | None,
    pool: str,
    run_untagged: bool | None,
) -> None:
    """Run a Celery worker that runs jobs in Docker containers."""
    from farm.domain.state import queues_for_worker

    if name:
        # The group already read (and cached) the settings: the job records, container
        # labels and logs read the name from them, so it must be there before they do.
        os.environ["FARM_WORKER_NAME"] = name
        get_settings.cache_clear()
    settings = get_settings()
    if run_untagged is None:
        run_untagged = settings.worker_run_untagged
    tag_list = [t for t in (tags or ",".join(settings.worker_tags)).split(",") if t]
    qs = queues or ",".join(queues_for_worker(tag_list, run_untagged=run_untagged))
    from farm.worker.run_job import app as celery_app

    celery_app.worker_main(
        [
            "worker",
            f"--loglevel={settings.log_level}",
            "-E",
            "-Q",
            qs,
            "-c",
            str(concurrency),
            "-P",
            pool,
            "-n",
            name or settings.worker_name,
            "--without-mingle",
            "--without-gossip",
            "--disable-prefetch",
        ]
    )


@cli.command()
@click.option("--port", type=int, default=None)
def flower(port: int | None) -> None:
    """Run Flower, the Celery dashboard, on 127.0.0.1."""
    settings = get_settings()
    from farm.worker.run_job import app as celery_app

    celery_app.start(["flower", "--address=127.0.0.1", f"--port={port or settings.flower_port}"])


# --- talking to the farm -------------------------------------------------------------


@cli.command()
@click.argument("repo")
@click.option("--ref", default=None, help="branch or tag (default: the repo's HEAD)")
@click.option("--commit", default=None, help="exact commit (default: the ref's tip)")
@click.option("--var", "variables", multiple=True, help="KEY=VALUE pipeline variable")
@click.option(
    "--wait",
    is_flag=True,
    help="follow the build; exit 0 on success or blocked at a manual job, 1 otherwise",
)
@click.option("--json", "as_json", is_flag=True, help="print the build document as JSON")
@click.option("--no-cache", is_flag=True, help="run every job: reuse no earlier job's result")
@click.pass_context
def submit(
    ctx: click.Context,
    repo: str,
    ref: str | None,
    commit: str | None,
    variables: tuple[str, ...],
    wait: bool,
    as_json: bool,
    no_cache: bool,
) -> None:
    """Build REPO (a git URL or a local path) at a ref or commit."""
    path = Path(repo).expanduser()
    if path.exists():
        repo = str(path.resolve())
        _warn_uncommitted(path)
    body: dict[str, Any] = {
        "repo": repo,
        "ref": ref,
        "commit": commit,
        "variables": dict(_kv(v) for v in variables),
    }
    if no_cache:
        body["no_cache"] = True
    api_client = _api(ctx)
    build = api_client.json("POST", "/api/v1/builds", json=body)
    click.echo(
        f"build {build['id']} created: {build['project']} @ {build['ref']} "
        f"({build['commit'][:8]}), {len(build['jobs'])} jobs",
        err=True,
    )
    if wait:
        build = follow(api_client, build["id"])
        _summary(build, ctx.obj)
    if as_json:
        click.echo(json.dumps(build, indent=2))
    elif not wait:
        click.echo(build["id"])
    # Blocked at a manual gate: the build did all it does by itself (its deliverable is
    # written); what is left waits for a person, so waiting succeeded (GitLab: "blocked").
    if wait and build["status"] not in (BuildStatus.SUCCESS, BuildStatus.MANUAL):
        sys.exit(1)


def _warn_uncommitted(path: Path) -> None:
    """Builds are of commits: say so when the work tree holds changes that won't be built."""
    try:
        out = subprocess.run(
            ["git", "-C", str(path), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return
    if out.strip():
        click.echo(
            f"note: {path} has uncommitted changes; farm builds the committed tree", err=True
        )


def _kv(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"{text!r} is not KEY=VALUE")
    return key, value


def _summary(build: dict[str, Any], api_url: str) -> None:
    blocked = blocked_message(build)
    word = f"blocked ({blocked})" if blocked else build["status"]
    click.echo(f"build {build['id']}: {word}", err=True)
    if build.get("deliverable"):
        d = build["deliverable"]
        click.echo(f"deliverable {d['digest']}: {api_url}{d['url']}", err=True)


@cli.command()
@click.argument("build_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.option("--timings", is_flag=True, help="each job's timeline: where its time went")
@click.pass_context
def status(ctx: click.Context, build_id: int, as_json: bool, timings: bool) -> None:
    """Show a build and its jobs."""
    build = _api(ctx).json("GET", f"/api/v1/builds/{build_id}")
    if as_json:
        click.echo(json.dumps(build, indent=2))
        return
    if timings:
        show_timings(build)
        return
    click.echo(
        f"build {build['id']} · {build['project']} @ {build['ref']} "
        f"({build['commit'][:8]}): {build['status']}"
    )
    for job in build["jobs"]:
        for line in job_lines(job):  # status, duration, attempt, coverage, tests
            click.echo(line)
    _summary(build, ctx.obj)


@cli.command()
@click.argument("build_id", type=int)
@click.pass_context
def cancel(ctx: click.Context, build_id: int) -> None:
    """Cancel a running build."""
    build = _api(ctx).json("POST", f"/api/v1/builds/{build_id}/cancel")
    click.echo(f"build {build['id']}: {build['status']}")


@cli.command()
@click.argument("job_id", type=int)
@click.pass_context
def play(ctx: click.Context, job_id: int) -> None:
    """Start a manual job."""
    job = _api(ctx).json("POST", f"/api/v1/jobs/{job_id}/play")
    click.echo(f"job {job['id']} ({job['name']}): {job['status']}")


cli.add_command(lint)
cli.add_command(artifacts_cmd.artifacts)
cli.add_command(release_cmd)
cli.add_command(rollout_cmd)
cli.add_command(gc_cmd)
cli.add_command(ps_cmd)
cli.add_command(token_cmd)
cli.add_command(secret_cmd)
cli.add_command(schedule_cmd)
cli.add_command(open_cmd)
cli.add_command(workers_cmd)
cli.add_command(logs_cmd)
cli.add_command(retry_cmd)
cli.add_command(builds_cmd)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="farm")


if __name__ == "__main__":
    main()
