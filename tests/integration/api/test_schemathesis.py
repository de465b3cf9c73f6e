"""Property-based fuzzing of the whole HTTP API against its own OpenAPI document.

schemathesis reads ``/openapi.json`` from the real app (SQLite and blobs under
tmp_path, jobs dispatched to a recorder, never to Celery) and sends every operation
generated requests, valid and invalid, in-process over ASGI: its examples, coverage
(boundary values: huge ids, NUL bytes, over-long strings, wrong types) and fuzzing
phases.  Every answer must be:

* not a 5xx (``not_a_server_error``);
* a status the document lists for that operation (``status_code_conformance``);
* of a documented content type, with a body and headers matching the schema documented
  for that status (``content_type_conformance``, ``response_schema_conformance``,
  ``response_headers_conformance``);
* a 4xx for a request the schema says is invalid (``negative_data_rejection``), except
  on the worker protocol's routes, see :data:`LAX_WORKER_MESSAGES`.

No route is excluded: the blob routes are fuzzed too (their bodies are small here).
Bounded for CI: a fixed seed and ``FARM_SCHEMATHESIS_EXAMPLES`` fuzzed cases per
operation (default 40; about 3,000 requests, under a minute on 2 cores).

The schemathesis engine is driven directly (as its CLI does) rather than through its
pytest plugin, whose lazy ``from_fixture`` schemas do not run under pytest 9.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from schemathesis import engine
from schemathesis.engine import events

from farm.api.app import create_app
from tests.farmtest import make_repo
from tests.unit.api.conftest import (
    PIPELINE,
    RecordingDispatcher,
    TestClient,
    WorkerWire,
    farm_settings,
    job_id,
)

MAX_EXAMPLES = int(os.environ.get("FARM_SCHEMATHESIS_EXAMPLES", "40"))
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "negative_data_rejection",
)
# The worker protocol's messages (farm.domain.messages) validate in pydantic's lax mode:
# JSON ``false`` is taken as 0 for a number (an ``offset``, a ``coverage``), where the
# schema says a number.  Harmless, but schemathesis calls it accepting invalid data.
# The batch routes carry the same messages, and answer 200 with each item's own error.
LAX_WORKER_MESSAGES = r"^/api/v1/worker/(jobs/|claims$|reports$)"


def _config() -> schemathesis.Config:
    checks: dict[str, object] = {"enabled": False}
    checks.update({name: {"enabled": True} for name in CHECKS})
    return schemathesis.Config.from_dict(
        {
            "seed": 16,
            "generation": {"max-examples": MAX_EXAMPLES, "mode": "all", "database": "none"},
            "phases": {"stateful": {"enabled": False}},
            "checks": checks,
            "operations": [
                {
                    "include-path-regex": LAX_WORKER_MESSAGES,
                    "checks": {"negative_data_rejection": {"enabled": False}},
                }
            ],
        }
    )


def _seed(http: TestClient, repo: Path) -> None:
    """Something for generated ids to find: a green build (id 1) with an artifact, a release."""
    build = http.post("/api/v1/builds", json={"repo": str(repo)}).json()
    worker = WorkerWire(http)
    art = worker.artifact("compile", b"compiled bytes\n", files=["out/app"])
    worker.run(job_id(build, "compile"), log="compiling\n", artifacts=[art])
    worker.run(job_id(build, "unit"), log="testing\n")
    resp = http.post("/api/v1/releases", json={"build": build["id"], "version": "1.0.0"})
    assert resp.status_code == 201, resp.text


@pytest.fixture
def farm_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FastAPI]:
    """The real app (lifespan running) with one green build and one release."""
    # A generated repo such as "ssh://x/y" must never make git leave this host.
    monkeypatch.setenv("GIT_ALLOW_PROTOCOL", "file")
    repo = make_repo(tmp_path / "shop", {".farm-ci.yml": PIPELINE, "README": "shop\n"})
    app = create_app(farm_settings(tmp_path / "farm"), dispatcher=RecordingDispatcher())
    with TestClient(app) as http:
        _seed(http, repo)
        yield app


def test_api_conforms_to_its_openapi(farm_app: FastAPI) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", farm_app, config=_config())
    operations = {op.ok().label for op in schema.get_all_operations()}
    assert len(operations) > 40, sorted(operations)
    started = time.monotonic()
    requests = 0
    failures: dict[tuple[str, str, str], str] = {}
    problems: list[str] = []
    for event in engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            requests += len(event.recorder.interactions)
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.failure_info is None:
                        continue
                    failure = check.failure_info.failure
                    first_line = (failure.message or "").splitlines()[:1]
                    key = (str(failure.operation), failure.title, "".join(first_line)[:200])
                    failures.setdefault(key, check.failure_info.code_sample)
        elif isinstance(event, events.NonFatalError):
            problems.append(f"{event.label}: {event.info.message}")
        elif isinstance(event, events.FatalError):
            raise event.exception
    elapsed = time.monotonic() - started
    report = [
        f"{operation}: {title}: {message}\n    {sample}"
        for (operation, title, message), sample in sorted(failures.items())
    ]
    print(f"schemathesis: {requests} requests to {len(operations)} operations in {elapsed:.0f}s")
    assert not problems, "\n".join(problems)
    assert not failures, f"{len(failures)} distinct failures:\n" + "\n".join(report)
    assert requests > 10 * len(operations)  # each operation was really exercised
