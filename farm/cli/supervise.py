"""Keeping ``farm up``'s children alive: restart with backoff, give up on a crash loop.

The supervisor owns the processes ``farm up`` started (redis when it started one, the
API, the workers, Flower), each in a session of its own and known by PID. ``tick()``
reaps a child that died, logs how it died, and starts it again after an exponential
backoff (``backoff_initial`` doubling up to ``backoff_max``, back to the start once a
child stayed up ``stable_after`` seconds). A child that died ``crash_deaths`` times
within ``crash_window`` seconds is in a crash loop: ``tick()`` raises :class:`CrashLoop`
and the caller stops everything. Each change is written to a small JSON state file
(:func:`state_path`) that ``farm ps`` reads without talking to the supervisor.

Stopping goes by tiers: workers and Flower first (a worker's warm shutdown still needs
the API and Redis to report), then the API, then Redis.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from farm.errors import ConfigError, ServiceUnavailable
from farm.settings import Settings

ENV_PREFIX = "FARM_SUPERVISE_"
TICK = 0.5  # seconds between looks at the children


@dataclass(frozen=True)
class Policy:
    """How the supervisor restarts children; each field is the setting ``supervise_<name>``."""

    backoff_initial: float = 1.0  # first restart delay, seconds
    backoff_max: float = 30.0  # the delay doubles up to this
    stable_after: float = 60.0  # a child up this long starts again from backoff_initial
    crash_deaths: int = 5  # this many deaths of one child ...
    crash_window: float = 120.0  # ... within this many seconds is a crash loop

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        """The policy the ``FARM_SUPERVISE_*`` settings describe."""
        policy = cls(
            backoff_initial=settings.supervise_backoff_initial,
            backoff_max=settings.supervise_backoff_max,
            stable_after=settings.supervise_stable_after,
            crash_deaths=settings.supervise_crash_deaths,
            crash_window=settings.supervise_crash_window,
        )
        if policy.backoff_max < policy.backoff_initial:
            raise ConfigError(
                f"{ENV_PREFIX}BACKOFF_MAX ({policy.backoff_max}) is below "
                f"{ENV_PREFIX}BACKOFF_INITIAL ({policy.backoff_initial})"
            )
        return policy

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Policy:
        """The policy of ``FARM_SUPERVISE_*`` variables in ``env`` (default: this process's)."""
        env = os.environ if env is None else env
        given = {
            k.removeprefix("FARM_").lower(): v
            for k, v in env.items()
            if k.startswith(ENV_PREFIX) and v != ""
        }
        try:
            settings = Settings.model_validate(given)
        except ValidationError as exc:
            first = exc.errors()[0]
            name = "FARM_" + str(first["loc"][0]).upper() if first["loc"] else ENV_PREFIX + "*"
            raise ConfigError(f"{name}={given.get(name[5:].lower())!r}: {first['msg']}") from None
        return cls.from_settings(settings)


class CrashLoop(ServiceUnavailable):
    """A child kept dying right after it was started; the farm was stopped."""


@dataclass(frozen=True)
class ChildSpec:
    """What to run: a name (its log is logs/NAME.log), argv, extra environment, tier."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    tier: int = 2  # stopped highest first: 2 workers/Flower, 1 API, 0 Redis


@dataclass
class Child:
    """One supervised child: its current process and its history."""

    spec: ChildSpec
    backoff: float
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0  # monotonic
    started_wall: float = 0.0
    restarts: int = 0
    deaths: deque[float] = field(default_factory=deque)
    restart_at: float | None = None  # monotonic; set while waiting to restart
    last_exit: str | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def describe_exit(returncode: int) -> str:
    """``exit 3`` or ``killed by SIGKILL``."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit {returncode}"


def state_path(data_dir: Path) -> Path:
    """The supervisor's state file (``farm ps`` reads it)."""
    return data_dir / "farm-up.json"


def read_state(data_dir: Path) -> dict[str, Any] | None:
    """The state a live supervisor wrote, or None (no file, unreadable, or its pid is gone)."""
    try:
        state = json.loads(state_path(data_dir).read_text())
        os.kill(int(state["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state if isinstance(state, dict) else None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the child gets SIGTERM if the supervisor dies (even by SIGKILL)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Supervisor:
    """Starts children with logs in files, restarts the ones that die, stops exactly those."""

    def __init__(
        self,
        data_dir: Path,
        policy: Policy | None = None,
        echo: Callable[[str], None] | None = None,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.policy = policy or Policy.from_env()
        self.children: list[Child] = []
        self.stopping = False  # set by SIGTERM/SIGINT: no more restarts
        self.force = False  # set by a second signal: SIGKILL what is left
        self.info = dict(info or {})
        self._echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))
        self._started_wall = time.time()

    @property
    def log_dir(self) -> Path:
        """Where each component's log goes (and farm-up.log, the supervisor's own)."""
        path = self.data_dir / "logs"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def log_of(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def say(self, message: str, console: bool = True) -> None:
        """One event line on the console and in logs/farm-up.log (once, if they are one)."""
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} farm up: {message}"
        if console:
            self._echo(line)
        if not self._stderr_is_own_log():
            with contextlib.suppress(OSError), open(self.log_of("farm-up"), "a") as out:
                out.write(line + "\n")

    def _stderr_is_own_log(self) -> bool:
        """A detached ``farm up`` writes its stderr to logs/farm-up.log already."""
        try:
            err, own = os.fstat(sys.stderr.fileno()), os.stat(self.log_of("farm-up"))
        except (OSError, ValueError):
            return False
        return (err.st_dev, err.st_ino) == (own.st_dev, own.st_ino)

    # --- starting ---------------------------------------------------------------------

    def start(self, spec: ChildSpec) -> Child:
        """Start ``spec`` now and supervise it from here on."""
        child = Child(spec, backoff=self.policy.backoff_initial)
        self.children.append(child)
        self._spawn(child)
        return child

    def _spawn(self, child: Child) -> None:
        out = open(self.log_of(child.spec.name), "ab")  # noqa: SIM115 (the child owns it)
        try:
            child.proc = subprocess.Popen(
                child.spec.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **child.spec.env},
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        finally:
            out.close()
        child.started, child.started_wall = time.monotonic(), time.time()
        child.restart_at = None
        self.write_state()

    def dead(self) -> list[str]:
        """Names of children whose process has exited (and was not restarted yet)."""
        return [c.spec.name for c in self.children if c.proc is not None and not c.running]

    # --- supervising ------------------------------------------------------------------

    def tick(self) -> None:
        """Reap children that died and restart those whose backoff is over.

        Raises :class:`CrashLoop` (children still running) when one is in a crash loop.
        """
        now = time.monotonic()
        for child in self.children:
            if self.stopping:
                return
            if child.proc is not None and child.proc.poll() is not None:
                self._died(child, now)
            elif child.proc is None and child.restart_at is not None and now >= child.restart_at:
                child.restarts += 1
                try:
                    self._spawn(child)
                except OSError as exc:  # e.g. its binary is gone: a death like any other
                    self._count_death(child, now, f"could not start ({exc})", None, 0.0)
                    continue
                assert child.proc is not None
                pid, n = child.proc.pid, child.restarts
                self.say(f"{child.spec.name} restarted: pid {pid} (restart {n})")

    def _died(self, child: Child, now: float) -> None:
        assert child.proc is not None
        pid, code = child.proc.pid, child.proc.returncode
        # A child is its own process group: take down whatever it left behind.
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
        child.proc = None
        self._count_death(child, now, describe_exit(code), pid, now - child.started)

    def _count_death(
        self, child: Child, now: float, how: str, pid: int | None, uptime: float
    ) -> None:
        """Log the death; schedule the restart, or raise CrashLoop."""
        child.last_exit, child.restart_at = how, None
        policy = self.policy
        if uptime >= policy.stable_after:
            child.backoff = policy.backoff_initial
        while child.deaths and now - child.deaths[0] > policy.crash_window:
            child.deaths.popleft()
        child.deaths.append(now)
        name, log = child.spec.name, self.log_of(child.spec.name)
        if len(child.deaths) >= policy.crash_deaths:
            self.write_state()
            raise CrashLoop(
                f"{name} is crash-looping ({len(child.deaths)} deaths within "
                f"{policy.crash_window:g} s, last: {child.last_exit}): farm up stops the whole "
                f"farm; see {log}"
            )
        delay = child.backoff
        child.backoff = min(child.backoff * 2, policy.backoff_max)
        child.restart_at = now + delay
        self.write_state()
        self.say(
            f"{name} (pid {pid or '-'}) died: {child.last_exit} after {uptime:.1f} s up; "
            f"restart {child.restarts + 1} in {delay:g} s; log {log}"
        )

    # --- stopping ---------------------------------------------------------------------

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every child, highest tier first: SIGTERM, then SIGKILL after the timeout.

        Workers get ``timeout`` for their warm shutdown, the API and Redis a third of it.
        A second signal (``force``) SIGKILLs what is left at once.
        """
        self.stopping = True
        for tier in sorted({c.spec.tier for c in self.children}, reverse=True):
            group = [c for c in self.children if c.spec.tier == tier and c.running]
            for child in group:
                assert child.proc is not None
                with contextlib.suppress(OSError):
                    child.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + (timeout if tier >= 2 else timeout / 3)
            while any(c.running for c in group) and time.monotonic() < deadline and not self.force:
                time.sleep(0.1)
            for child in group:
                self._reap(child)
        self.write_state()

    @staticmethod
    def _reap(child: Child) -> None:
        if child.proc is None:
            return
        if child.proc.poll() is None:
            child.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(5)
        with contextlib.suppress(OSError):
            os.killpg(child.proc.pid, signal.SIGKILL)
        if child.proc.returncode is not None:
            child.last_exit = describe_exit(child.proc.returncode)
        child.proc = None
        child.restart_at = None

    # --- state for `farm ps` ----------------------------------------------------------

    def write_state(self) -> None:
        """Write the state file atomically (temp file, then rename)."""
        now_mono, now_wall = time.monotonic(), time.time()
        children = []
        for c in self.children:
            running = c.running
            children.append(
                {
                    "name": c.spec.name,
                    "pid": c.proc.pid if running and c.proc else None,
                    "state": "running"
                    if running
                    else "waiting"
                    if c.restart_at and not self.stopping
                    else "stopped",
                    "started": c.started_wall if running else None,
                    "restarts": c.restarts,
                    "last_exit": c.last_exit,
                    "next_start": now_wall + max(c.restart_at - now_mono, 0.0)
                    if c.restart_at and not running
                    else None,
                    "log": str(self.log_of(c.spec.name)),
                }
            )
        state = {
            "pid": os.getpid(),
            "started": self._started_wall,
            "stopping": self.stopping,
            **self.info,
            "children": children,
        }
        path = state_path(self.data_dir)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps(state, indent=2))
            os.replace(tmp, path)

    def remove_state(self) -> None:
        """Forget the state file (the supervisor is about to exit)."""
        state_path(self.data_dir).unlink(missing_ok=True)
