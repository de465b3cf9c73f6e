"""The `farm` CLI (click's CliRunner, in-process) against the real API on uvicorn.

One API per session on a free 127.0.0.1 port: ``create_app`` with the recording
dispatcher, SQLite and blobs under a temporary directory, no broker, no Docker.
Tests play the workers' part through the worker endpoints (``WorkerWire``, shared
with tests/unit/api), so each test uses its own project name to stay apart.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from farm.api.app import create_app
from farm.cli.main import cli
from tests.farmtest import free_port, make_repo, served
from tests.unit.api.conftest import (
    PIPELINE,
    RecordingDispatcher,
    WorkerWire,
    farm_settings,
)


@dataclass
class LiveApi:
    """The session's API: its URL, a worker speaking to it, what it dispatched."""

    url: str
    http: httpx.Client
    worker: WorkerWire
    dispatcher: RecordingDispatcher

    def submit(self, repo: Path, **body: Any) -> dict[str, Any]:
        """POST a build; asserts 201 and returns the document."""
        # no_cache: a rebuild of the same commit must run (these tests play the worker).
        resp = self.http.post("/api/v1/builds", json={"repo": str(repo), "no_cache": True, **body})
        assert resp.status_code == 201, resp.text
        doc: dict[str, Any] = resp.json()
        return doc

    def in_background(
        self, project: Path, exit_codes: dict[str, int] | None = None
    ) -> threading.Thread:
        """Run the next build of ``project`` to its end, on a thread of its own
        (for `farm submit --wait`, which blocks until the build is final)."""
        start = len(self.dispatcher.sent)

        def work() -> None:
            with httpx.Client(base_url=self.url, timeout=30) as http:
                for after in itertools.count(start):  # every dispatch from `start` on
                    sent = self.dispatcher.wait_for(lambda d: True, timeout=30, after=after)
                    build = http.get(f"/api/v1/builds/{sent.build_id}").json()
                    if build["project"] == project.name:
                        break
                WorkerWire(http, name="background@test").run_build(sent.build_id, exit_codes)

        thread = threading.Thread(target=work, name="farm-test-worker", daemon=True)
        thread.start()
        return thread


@pytest.fixture(scope="session")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    """The real app on uvicorn (lifespan on: recovery and watchdog thread run)."""
    dispatcher = RecordingDispatcher()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = farm_settings(tmp_path_factory.mktemp("cli-farm"), api_url=url)
    app = create_app(settings, dispatcher=dispatcher)
    with served(app, port), httpx.Client(base_url=url, timeout=30) as http:
        yield LiveApi(url, http, WorkerWire(http), dispatcher)


Farm = Callable[..., Result]


@pytest.fixture
def farm(live_api: LiveApi) -> Farm:
    """``farm(*args, api=URL)``: run `farm --api URL ARGS` in-process; click's Result."""

    def invoke(*args: str, api: str | None = None) -> Result:
        return CliRunner().invoke(
            cli, ["--api", api or live_api.url, *args], catch_exceptions=False
        )

    return invoke


@pytest.fixture
def dead_api() -> str:
    """A loopback URL nothing listens on."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def project(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """A git repo with the standard pipeline, named after the test (its own project)."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.removeprefix("test_").lower())[:40]
    return make_repo(tmp_path / name, {".farm-ci.yml": PIPELINE})


@pytest.fixture
def green(live_api: LiveApi, project: Path) -> dict[str, Any]:
    """A successful build of ``project`` (its ``compile`` job left an artifact)."""
    build = live_api.submit(project)
    compile_job = next(j for j in build["jobs"] if j["name"] == "compile")
    art = live_api.worker.artifact("app", b"the app\n")
    live_api.worker.run(compile_job["id"], log="compiling\n", artifacts=[art])
    done = live_api.worker.run_build(build["id"])
    assert done["status"] == "success", done
    return done


def one_line(text: str) -> str:
    """The only line of ``text`` (asserting there is exactly one, and no traceback)."""
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]
