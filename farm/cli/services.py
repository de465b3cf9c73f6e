"""Running the farm's processes: ``farm up`` starts redis, API, workers and Flower and
keeps them running; ``farm ps`` lists them.

Each component is its own process (started by PID, stopped by PID), so ``farm up``
is the same farm that compose.yaml runs across hosts, just on one machine. A child
that dies is restarted with backoff (:mod:`farm.cli.supervise`); only a signal
(``farm down``, Ctrl-C) or a crash loop stops the farm.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import click
import httpx
import redis

from farm.cli.supervise import TICK, ChildSpec, CrashLoop, Policy, Supervisor, read_state
from farm.errors import ConfigError, ServiceUnavailable
from farm.settings import Settings, get_settings, local_token_path


def redis_answers(url: str) -> bool:
    """Whether a Redis server answers PING at ``url``."""
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2).ping())
    except redis.RedisError:
        return False


def api_healthy(url: str) -> bool:
    """Whether the farm API answers /healthz."""
    try:
        return httpx.get(url + "/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def farm_argv(*args: str) -> list[str]:
    """Run a farm subcommand with this interpreter (works without the console script)."""
    return [sys.executable, "-m", "farm.cli.main", *args]


def redis_spec(settings: Settings) -> ChildSpec | None:
    """A local redis-server to start, or None when one already answers at the broker URL."""
    url = settings.broker_url
    if redis_answers(url):
        return None
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 6379
    binary = shutil.which("redis-server")
    if host not in ("127.0.0.1", "localhost", "::1") or binary is None:
        raise ConfigError(
            f"Redis does not answer at {url} and "
            + ("it is not local" if binary else "redis-server is not installed")
            + ": install it (apt-get install redis-server) or set FARM_BROKER_URL"
        )
    rdir = settings.data_dir / "redis"
    rdir.mkdir(parents=True, exist_ok=True)
    argv = [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(rdir)]
    return ChildSpec("redis", [*argv, "--appendonly", "yes", "--save", ""], tier=0)


def _wait(check: Callable[[], bool], seconds: float, message: str, sup: Supervisor) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if sup.stopping:
            raise KeyboardInterrupt
        if check():
            return
        time.sleep(0.2)
    raise ServiceUnavailable(message)


def start_farm(
    sup: Supervisor, settings: Settings, workers: int, concurrency: int, flower: bool
) -> None:
    """Start redis (if needed), the API, workers and Flower; return once the API answers."""
    api = settings.resolved_api_url
    spec = redis_spec(settings)
    if spec is not None:
        sup.start(spec)
        _wait(
            lambda: redis_answers(settings.broker_url) or bool(sup.dead()),
            20,
            f"redis-server did not start; see {sup.log_of('redis')}",
            sup,
        )
    sup.start(ChildSpec("api", farm_argv("api"), tier=1))
    _wait(lambda: api_healthy(api) or bool(sup.dead()), 60, "the API did not start", sup)
    if dead := sup.dead():
        raise ServiceUnavailable(f"{dead[0]} exited at start; see {sup.log_of(dead[0])}")
    host = settings.worker_name
    for i in range(1, workers + 1):
        argv = ["worker", "--concurrency", str(concurrency), "--name", f"w{i}@{host}"]
        sup.start(ChildSpec(f"worker-{i}", farm_argv(*argv), {"FARM_WORKER_NAME": f"w{i}@{host}"}))
    if flower:
        sup.start(ChildSpec("flower", farm_argv("flower"), {"FLOWER_UNAUTHENTICATED_API": "true"}))


def serve(settings: Settings, workers: int, concurrency: int, flower: bool) -> None:
    """``farm up`` in the foreground: start, supervise until a signal or a crash loop, stop.

    The first SIGTERM/SIGINT stops the children gracefully (workers first, Redis last),
    a second one SIGKILLs what is left. A crash loop raises :class:`CrashLoop` after
    everything is stopped.
    """
    api = settings.resolved_api_url
    if api_healthy(api):
        raise ConfigError(f"a farm API already answers at {api}: is another `farm up` running?")
    info = {"api": api, "flower": f"http://127.0.0.1:{settings.flower_port}" if flower else None}
    sup = Supervisor(settings.data_dir, Policy.from_settings(settings), info=info)

    received: list[str] = []

    def on_signal(sig: int, _frame: Any) -> None:
        received.append(signal.Signals(sig).name)
        sup.force = sup.stopping
        sup.stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    pidfile(settings).write_text(str(os.getpid()))
    try:
        start_farm(sup, settings, workers, concurrency, flower)
        click.echo(
            f"farm is up: API {api} · dashboard {api}/ · {workers} worker(s) · "
            + (f"Flower {info['flower']} · " if flower else "")
            + f"logs in {sup.log_dir} · `farm ps` lists the processes"
            + (
                f" · admin token in {local_token_path(settings.data_dir, 'admin')}"
                if settings.auth
                else " · auth off (loopback only)"
            ),
            err=True,
        )
        while not sup.stopping:
            sup.tick()
            time.sleep(TICK)
    except CrashLoop as exc:
        sup.say(f"error: {exc}", console=False)
        raise
    finally:
        if sup.children:
            sup.say("stopping farm" + (f" ({received[0]})" if received else "") + "…")
        sup.stop()
        pidfile(settings).unlink(missing_ok=True)
        sup.remove_state()
        if sup.children:
            sup.say("stopped: every child has exited")


def pidfile(settings: Settings) -> Path:
    """Where a running `farm up` records its PID."""
    return settings.data_dir / "farm-up.pid"


def read_pid(settings: Settings) -> int | None:
    """PID of a running farm, if any."""
    path = pidfile(settings)
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def stop_pid(pid: int, timeout: float = 60.0) -> bool:
    """SIGTERM a process we started and wait for it; True if it ended."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def _age(seconds: float) -> str:
    s = max(int(seconds), 0)
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60)):
        if s >= size:
            return f"{s // size}{unit} {s % size // sub_size:02d}{sub}"
    return f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s"


@click.command()
@click.option("--json", "as_json", is_flag=True, help="print the supervisor's state as JSON")
def ps(as_json: bool) -> None:
    """List the processes of the running `farm up`: pid, uptime, restarts, last exit."""
    state = read_state(get_settings().data_dir)
    if state is None:
        click.echo("farm is not running", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(state, indent=2))
        return
    now = time.time()
    click.echo(
        f"farm up · pid {state['pid']} · up {_age(now - state['started'])} · API {state['api']}"
        + (" · stopping" if state.get("stopping") else "")
    )
    click.echo(f"{'NAME':<10} {'PID':>8} {'UPTIME':>8} {'RESTARTS':>8}  {'STATE':<8} LAST EXIT")
    for c in state["children"]:
        if c["state"] == "running":
            uptime = _age(now - c["started"])
        elif c["next_start"]:
            uptime = f"in {max(c['next_start'] - now, 0):.0f}s"
        else:
            uptime = "-"
        click.echo(
            f"{c['name']:<10} {c['pid'] or '-':>8} {uptime:>8} {c['restarts']:>8}  "
            f"{c['state']:<8} {c['last_exit'] or ''}"
        )
