"""Running the farm's processes: ``farm up`` supervises redis, API, workers and Flower.

Each component is its own process (started by PID, stopped by PID), so ``farm up``
is the same farm that compose.yaml runs across hosts, just on one machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx
import redis

from farm.errors import ConfigError, ServiceUnavailable
from farm.settings import Settings


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


@dataclass
class Supervisor:
    """Starts child processes with logs in files and stops exactly those PIDs."""

    settings: Settings
    children: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    @property
    def log_dir(self) -> Path:
        """Where each component's log goes."""
        path = self.settings.data_dir / "logs"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        """Start ``argv`` as component ``name``, output appended to logs/NAME.log."""
        out = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 (child owns it)
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        out.close()
        self.children.append((name, proc))

    def ensure_redis(self) -> None:
        """Use the configured broker, or start a local redis-server when none answers."""
        url = self.settings.broker_url
        if redis_answers(url):
            return
        parsed = urlparse(url)
        host, port = parsed.hostname or "127.0.0.1", parsed.port or 6379
        binary = shutil.which("redis-server")
        if host not in ("127.0.0.1", "localhost", "::1") or binary is None:
            raise ConfigError(
                f"Redis does not answer at {url} and "
                + ("it is not local" if binary else "redis-server is not installed")
                + ": install it (apt-get install redis-server) or set FARM_BROKER_URL"
            )
        rdir = self.settings.data_dir / "redis"
        rdir.mkdir(parents=True, exist_ok=True)
        self.start(
            "redis",
            [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--dir",
                str(rdir),
                "--appendonly",
                "yes",
                "--save",
                "",
            ],
        )
        _wait(lambda: redis_answers(url), 20, f"redis-server on port {port} did not start")

    def alive(self) -> list[str]:
        """Names of children that have exited."""
        return [name for name, p in self.children if p.poll() is not None]

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM every child (workers finish their warm shutdown), then SIGKILL stragglers."""
        for _, proc in reversed(self.children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for _, proc in reversed(self.children):
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _wait(check: object, seconds: float, message: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.2)
    raise ServiceUnavailable(message)


def farm_argv(*args: str) -> list[str]:
    """Run a farm subcommand with this interpreter (works without the console script)."""
    return [sys.executable, "-m", "farm.cli.main", *args]


def run_farm(settings: Settings, workers: int, concurrency: int, flower: bool) -> Supervisor:
    """Start redis (if needed), the API, workers and Flower; return once the API answers."""
    sup = Supervisor(settings)
    try:
        sup.ensure_redis()
        api = settings.resolved_api_url
        if api_healthy(api):
            raise ConfigError(f"a farm API already answers at {api}: is another `farm up` running?")
        sup.start("api", farm_argv("api"))
        _wait(lambda: api_healthy(api) or bool(sup.alive()), 60, "the API did not start")
        if sup.alive():
            raise ServiceUnavailable(f"the API exited at start; see {sup.log_dir / 'api.log'}")
        host = settings.worker_name
        for i in range(1, workers + 1):
            sup.start(
                f"worker-{i}",
                farm_argv("worker", "--concurrency", str(concurrency), "--name", f"w{i}@{host}"),
                env={"FARM_WORKER_NAME": f"w{i}@{host}"},
            )
        if flower:
            sup.start("flower", farm_argv("flower"), env={"FLOWER_UNAUTHENTICATED_API": "true"})
    except BaseException:
        sup.stop(10)
        raise
    return sup


def pidfile(settings: Settings) -> Path:
    """Where a detached `farm up` records its PID."""
    return settings.data_dir / "farm-up.pid"


def read_pid(settings: Settings) -> int | None:
    """PID of a running detached farm, if any."""
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
