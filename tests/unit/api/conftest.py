"""The real API app on a TestClient: SQLite and blobs under tmp_path, no broker, no Docker.

Jobs are dispatched to a :class:`RecordingDispatcher` instead of Celery, and the tests
play the worker's part over the worker endpoints with :class:`WorkerWire`, the one place
here that knows the worker<->coordinator wire shape (the CLI tests reuse it).
"""

from __future__ import annotations

import hashlib
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from celery import Celery
from fastapi import FastAPI

from farm.api.app import create_app
from farm.domain.records import BuildRecord, JobRecord
from farm.settings import Settings
from tests.farmtest import make_repo

with warnings.catch_warnings():  # starlette nags about httpx vs httpx2 on import
    warnings.filterwarnings("ignore", message=".*httpx2")
    from fastapi.testclient import TestClient

# The worker protocol whose JSON shape WorkerWire writes by hand (farm.domain.messages):
# when PROTOCOL_VERSION is bumped, this helper is the one place to update.
PROTOCOL = 3

# Three stages, one artifact, a manual deploy: enough for every router's paths.
PIPELINE = """\
stages: [build, test, deploy]
compile:
  stage: build
  script: [make]
  artifacts:
    paths: [out/]
unit:
  stage: test
  script: [make test]
deploy:
  stage: deploy
  script: [./deploy]
  when: manual
"""

# Line 4 names an undeclared stage: the API must answer 422 naming .farm-ci.yml:4.
BAD_PIPELINE = """\
stages: [build]
ok:
  script: [make]
  stage: nope
"""


def sha256(data: bytes) -> str:
    """The farm's digest string of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Dispatch:
    """One job attempt the coordinator handed to "Celery"."""

    job_id: int
    attempt: int
    build_id: int
    name: str
    queue: str
    countdown: float | None


class RecordingDispatcher:
    """A :class:`~farm.coordinator.service.Dispatcher` that records instead of publishing."""

    def __init__(self) -> None:
        self.sent: list[Dispatch] = []
        self._changed = threading.Condition()

    def dispatch(self, job: JobRecord, build: BuildRecord, countdown: float | None = None) -> None:
        """Record the attempt (what Celery's ``send_task`` would have carried)."""
        with self._changed:
            self.sent.append(
                Dispatch(job.id, job.attempt, build.id, job.name, job.queue, countdown)
            )
            self._changed.notify_all()

    def of_build(self, build_id: int) -> list[Dispatch]:
        """Attempts dispatched for one build, in order."""
        with self._changed:
            return [d for d in self.sent if d.build_id == build_id]

    def wait_for(
        self, match: Callable[[Dispatch], bool], timeout: float = 10, after: int = 0
    ) -> Dispatch:
        """The first dispatch from index ``after`` on that ``match``es, waiting for it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for d in self.sent[after:]:
                    if match(d):
                        return d
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no matching dispatch within {timeout}s: {self.sent}")
                self._changed.wait(left)


class WorkerWire:
    """Plays a worker over ``/api/v1/worker`` and ``/api/v1/blobs`` (raw JSON, as on the wire)."""

    def __init__(
        self, http: httpx.Client, name: str = "unit-worker@test", protocol: int = PROTOCOL
    ) -> None:
        self.http = http
        self.name = name
        self.protocol = protocol
        self.job_tokens: dict[int, str] = {}  # what each claim answered, sent back after

    def claim(self, job_id: int, attempt: int = 1) -> httpx.Response:
        """Take an attempt; 200 with the assignment, 409 when it is not waiting."""
        resp = self.http.post(
            f"/api/v1/worker/jobs/{job_id}/claim",
            json={"protocol": self.protocol, "attempt": attempt, "worker": self.name},
        )
        if resp.status_code == 200:
            self.job_tokens[job_id] = resp.json().get("job_token", "")
        return resp

    def log(self, job_id: int, attempt: int, data: str) -> httpx.Response:
        """Append output (also the heartbeat)."""
        return self.http.post(
            f"/api/v1/worker/jobs/{job_id}/log",
            json={
                "protocol": self.protocol,
                "attempt": attempt,
                "data": data,
                "job_token": self.job_tokens.get(job_id, ""),
            },
        )

    def finish(
        self,
        job_id: int,
        attempt: int = 1,
        exit_code: int | None = 0,
        *,
        reason: str | None = None,
        artifacts: list[dict[str, Any]] | None = None,
        coverage: float | None = None,
    ) -> httpx.Response:
        """Report how the attempt ended."""
        body: dict[str, Any] = {
            "protocol": self.protocol,
            "attempt": attempt,
            "job_token": self.job_tokens.get(job_id, ""),
            "exit_code": exit_code,
            "reason": reason,
            "message": "",
            "artifacts": artifacts or [],
        }
        if coverage is not None:
            body["coverage"] = coverage
        return self.http.post(f"/api/v1/worker/jobs/{job_id}/finish", json=body)

    def live(self, pairs: list[tuple[int, int]]) -> httpx.Response:
        """Which (job, attempt) pairs still run."""
        return self.http.post(
            "/api/v1/worker/live",
            json={"protocol": self.protocol, "attempts": [list(p) for p in pairs]},
        )

    def upload(self, data: bytes) -> str:
        """PUT a blob by digest (as a worker uploads an artifact); its digest."""
        digest = sha256(data)
        resp = self.http.put(f"/api/v1/blobs/{digest}", content=data)
        assert resp.status_code in (200, 201), resp.text
        return digest

    def artifact(self, name: str, data: bytes, **extra: Any) -> dict[str, Any]:
        """Upload ``data`` and describe it as a finish report lists an artifact."""
        digest = self.upload(data)
        return {"name": name, "kind": "archive", "digest": digest, "size": len(data), **extra}

    def run(
        self,
        job_id: int,
        attempt: int = 1,
        exit_code: int = 0,
        *,
        log: str = "",
        artifacts: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Claim, log and finish one attempt; the finish answer ({status, attempt})."""
        claimed = self.claim(job_id, attempt)
        assert claimed.status_code == 200, claimed.text
        if log:
            logged = self.log(job_id, attempt, log)
            assert logged.status_code == 200, logged.text
        done = self.finish(job_id, attempt, exit_code, artifacts=artifacts)
        assert done.status_code == 200, done.text
        body: dict[str, Any] = done.json()
        return body

    def run_build(self, build_id: int, exit_codes: dict[str, int] | None = None) -> dict[str, Any]:
        """Run every job that becomes pending (exit 0 unless ``exit_codes`` says otherwise)
        until none is left; the build document then (manual jobs stay manual)."""
        while True:
            build: dict[str, Any] = self.http.get(f"/api/v1/builds/{build_id}").json()
            pending = [j for j in build["jobs"] if j["status"] == "pending"]
            if not pending:
                return build
            for job in pending:
                code = (exit_codes or {}).get(job["name"], 0)
                self.run(job["id"], job["attempt"], code, log=f"{job['name']} ran\n")


def job_id(build: dict[str, Any], name: str) -> int:
    """The id of job ``name`` in a build document."""
    for job in build["jobs"]:
        if job["name"] == name:
            return int(job["id"])
    raise KeyError(f"no job {name!r} in build {build['id']}")


class RecordingCelery(Celery):
    """A Celery app on the in-memory broker that records what it is asked to send
    (what ``CeleryDispatcher`` hands Celery), and sends nothing."""

    def __init__(self) -> None:
        super().__init__("recording", broker="memory://")
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def send_task(self, name: str, **kwargs: Any) -> None:  # type: ignore[override]
        self.sent.append((name, kwargs))


def farm_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings of a private farm under ``data_dir``: SQLite, fs blobs, no data plane."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": f"sqlite:///{data_dir / 'farm.db'}",
        "blob_store": "fs",
        "blob_data_plane": False,
        "broker_url": "redis://127.0.0.1:9/0",  # never used: jobs go to the recorder
        "api_url": "http://127.0.0.1:8700",
        "watchdog_interval": 3600.0,  # recovery runs at start; no watchdog passes in tests
        "auth": False,  # these tests are about the routes; tests/unit/api/test_auth*.py: tokens
        **overrides,
    }
    return Settings(**values)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override to change the app's settings in a module or test (e.g. small limits)."""
    return {}


@pytest.fixture
def dispatcher() -> RecordingDispatcher:
    """What the app's coordinator dispatches to."""
    return RecordingDispatcher()


@pytest.fixture
def app(
    tmp_path: Path, dispatcher: RecordingDispatcher, settings_overrides: dict[str, Any]
) -> FastAPI:
    """The real app factory with the recording dispatcher."""
    return create_app(farm_settings(tmp_path / "farm", **settings_overrides), dispatcher=dispatcher)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """A client of the app with its lifespan running (watchdog thread started)."""
    with TestClient(app) as http:
        yield http


@pytest.fixture
def worker(client: TestClient) -> WorkerWire:
    """A worker speaking to the app."""
    return WorkerWire(client)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository (project ``shop``) with :data:`PIPELINE` committed on ``main``."""
    return make_repo(tmp_path / "shop", {".farm-ci.yml": PIPELINE, "README": "shop\n"})


Submit = Callable[..., dict[str, Any]]


@pytest.fixture
def submit(client: TestClient, repo: Path) -> Submit:
    """``submit(repo=..., **body)``: POST a build, assert 201, return its document."""

    def _submit(path: Path | None = None, **body: Any) -> dict[str, Any]:
        # no_cache: these tests play the worker for every build; a rebuild of the same
        # commit would otherwise reuse the first results (tests of the result cache say so).
        body = {"repo": str(path or repo), "no_cache": True, **body}
        resp = client.post("/api/v1/builds", json=body)
        assert resp.status_code == 201, resp.text
        doc: dict[str, Any] = resp.json()
        return doc

    return _submit


@pytest.fixture
def green_build(client: TestClient, worker: WorkerWire, submit: Submit) -> dict[str, Any]:
    """A successful build of :data:`PIPELINE` whose ``compile`` job left one artifact."""
    build = submit()
    art = worker.artifact("compile", b"compiled bytes\n", files=["out/app"])
    worker.run(job_id(build, "compile"), log="compiling\n", artifacts=[art])
    worker.run(job_id(build, "unit"), log="testing\n")
    doc: dict[str, Any] = client.get(f"/api/v1/builds/{build['id']}").json()
    assert doc["status"] == "success", doc
    return doc
