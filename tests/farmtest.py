"""Helpers for tests that drive a real farm: git repos, a running farm's handle."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qs, urlparse

import httpx
import uvicorn

from farm.settings import local_token_path

BUSYBOX = "farm/busybox:latest"
DEBIAN = "farm/debian:bookworm"
FINAL = {"success", "failed", "canceled"}

T = TypeVar("T")


@contextmanager
def served(app: Any, port: int, lifespan: Literal["auto", "on", "off"] = "on") -> Iterator[None]:
    """ASGI ``app`` on uvicorn at 127.0.0.1:``port``, on a thread, for the ``with`` block
    (``lifespan="on"``: a farm app's recovery and watchdog thread run)."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan=lifespan
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="farm-test-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` with a fixed identity."""
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env
    ).stdout.strip()


def make_repo(root: Path, files: dict[str, str], branch: str = "main") -> Path:
    """A git repository at ``root`` with ``files`` committed on ``branch``."""
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", branch)
    commit_files(root, files)
    return root


def commit_files(root: Path, files: dict[str, str], message: str = "change") -> str:
    """Write and commit ``files``; returns the new commit sha."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)
    return git(root, "rev-parse", "HEAD")


@dataclass
class Proc:
    """A process a test started, stopped by its PID only."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout: float = 20) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


@dataclass
class Farm:
    """A running farm (API + workers on a private Redis) and ways to use it."""

    url: str
    env: dict[str, str]
    data_dir: Path
    procs: list[Proc] = field(default_factory=list)

    @property
    def token(self) -> str:
        """The admin token the farm's API wrote for this host (auth is on, as by default)."""
        return local_token_path(self.data_dir, "admin").read_text().strip()

    @property
    def http(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, timeout=60, headers={"Authorization": f"Bearer {self.token}"}
        )

    def start(self, name: str, *args: str, extra_env: dict[str, str] | None = None) -> Proc:
        """Start ``farm ARGS`` as a child process with this farm's environment."""
        log = self.data_dir / f"{name}.log"
        out = open(log, "ab")  # noqa: SIM115
        popen = subprocess.Popen(
            [sys.executable, "-m", "farm.cli.main", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**self.env, **(extra_env or {})},
        )
        out.close()
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def cli(
        self, *args: str, check: bool = False, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run the `farm` CLI against this farm."""
        return subprocess.run(
            [sys.executable, "-m", "farm.cli.main", "--api", self.url, *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=check,
        )

    def submit(self, repo: Path | str, **body: Any) -> dict[str, Any]:
        """POST a build; asserts 201 and returns the document."""
        with self.http as h:
            resp = h.post("/api/v1/builds", json={"repo": str(repo), **body})
        assert resp.status_code == 201, resp.text
        return dict(resp.json())

    def build(self, build_id: int) -> dict[str, Any]:
        with self.http as h:
            resp = h.get(f"/api/v1/builds/{build_id}")
        resp.raise_for_status()
        return dict(resp.json())

    def wait(
        self, build_id: int, timeout: float = 180, until: set[str] | None = None
    ) -> dict[str, Any]:
        """Poll until the build reaches one of ``until`` (default: final)."""
        until = until or FINAL
        deadline = time.monotonic() + timeout
        while True:
            build = self.build(build_id)
            if build["status"] in until:
                return build
            if time.monotonic() > deadline:
                raise AssertionError(f"build {build_id} still {build['status']}: {build['jobs']}")
            time.sleep(0.3)

    def wait_job(
        self, build_id: int, name: str, statuses: set[str], timeout: float = 120
    ) -> dict[str, Any]:
        """Poll until job ``name`` of the build is in one of ``statuses``."""
        deadline = time.monotonic() + timeout
        while True:
            job = job_named(self.build(build_id), name)
            if job["status"] in statuses:
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {name} still {job['status']}")
            time.sleep(0.2)

    def log(self, job_id: int) -> str:
        with self.http as h:
            return h.get(f"/api/v1/jobs/{job_id}/log").text


def job_named(build: dict[str, Any], name: str) -> dict[str, Any]:
    """The job called ``name`` in a build document."""
    for job in build["jobs"]:
        if job["name"] == name:
            return dict(job)
    raise KeyError(f"no job {name!r} in build {build['id']}: {[j['name'] for j in build['jobs']]}")


def wait_for(check: Any, timeout: float, what: str) -> None:
    """Poll ``check()`` until it is true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def at_once(call: Callable[[], T], times: int) -> list[T | BaseException]:
    """Run ``call`` on ``times`` threads released together; each result or exception."""
    barrier = threading.Barrier(times)
    results: list[T | BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            results.append(call())
        except BaseException as exc:  # collected for the test to assert on
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(times)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


class Health:
    """A health endpoint on 127.0.0.1: 500 for the scopes in ``sick``, else 200.

    Records every probe's query (``scope``, ``version``) so tests can count them.
    """

    def __init__(self) -> None:
        self.sick: set[str] = set()
        self.hits: list[dict[str, str]] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
                with outer._lock:
                    outer.hits.append(query)
                    sick = query.get("scope") in outer.sick
                self.send_response(500 if sick else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def url(self) -> str:
        """The check URL template for a plan (``{scope}``/``{version}`` filled by farm)."""
        return f"http://127.0.0.1:{self.port}/health?scope={{scope}}&version={{version}}"

    def count(self, scope: str) -> int:
        with self._lock:
            return sum(1 for h in self.hits if h.get("scope") == scope)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def admin_headers(data_dir: str | Path) -> dict[str, str]:
    """The Authorization header of the admin token a farm's API wrote under ``data_dir``."""
    token = local_token_path(Path(data_dir), "admin").read_text().strip()
    return {"Authorization": f"Bearer {token}"}


def farm_cli(
    env: dict[str, str], *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``farm ARGS`` as a process with ``env`` (e2e tests of `farm up` and friends)."""
    return subprocess.run(
        [sys.executable, "-m", "farm.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
