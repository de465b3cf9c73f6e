"""The app itself: liveness, metrics, the OpenAPI document, error bodies, the lifespan."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from farm.api import routers
from farm.api.app import create_app
from farm.worker.app import CeleryDispatcher
from tests.farmtest import make_repo
from tests.unit.api.conftest import (
    PIPELINE,
    RecordingDispatcher,
    Submit,
    TestClient,
    WorkerWire,
    farm_settings,
    job_id,
)

# Every operation has its own id: a duplicate is an error here.
pytestmark = pytest.mark.filterwarnings("error:Duplicate Operation ID")


def assert_error(resp: httpx.Response, status: int, error: str | None) -> dict[str, Any]:
    """A FarmError/validation answer: the status, ``{"detail": one line, "error": class}``."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = resp.json()
    assert isinstance(body["detail"], str) and body["detail"], body
    assert "\n" not in body["detail"] and "Traceback" not in resp.text
    if error is not None:
        assert body["error"] == error
    return body


def test_healthz(client: TestClient) -> None:
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json()["status"] == "ok" and resp.json()["version"]


def test_metrics_count_builds_and_jobs_by_status(client: TestClient, submit: Submit) -> None:
    text = client.get("/metrics").text
    assert "farm_builds_total 0.0\n" in text and "# TYPE farm_jobs gauge" in text
    submit()
    resp = client.get("/metrics")
    assert resp.headers["content-type"].startswith("text/plain")
    assert "farm_builds_total 1.0\n" in resp.text
    assert 'farm_jobs{status="pending"} 1.0\n' in resp.text
    assert 'farm_jobs{status="created"} 2.0\n' in resp.text
    assert "farm_blob_data" not in resp.text  # no data plane in these tests


def test_openapi_lists_every_route(client: TestClient) -> None:
    """Every route of every module in farm/api/routers (and the app's own) is documented."""
    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.") and spec["info"]["title"] == "farm"
    routes = [("/healthz", {"GET"}), ("/metrics", {"GET"})]
    for module in pkgutil.iter_modules(routers.__path__):
        router = importlib.import_module(f"{routers.__name__}.{module.name}").router
        routes += [(r.path_format, r.methods) for r in router.routes if isinstance(r, APIRoute)]
    assert len(routes) > 25
    for path, methods in routes:
        documented = spec["paths"].get(path)
        assert documented is not None, f"{path} missing from /openapi.json"
        for method in methods:
            assert method.lower() in documented, f"{method} {path} undocumented"


def test_openapi_is_valid(client: TestClient) -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(client.get("/openapi.json").json())


def test_openapi_422_schema_matches_the_error_body(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/api/v1/builds/{build_id}"]["get"]
    ref = op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
    schema = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert schema["properties"]["detail"].get("type") == "string"


def test_openapi_documents_the_success_statuses_answered(
    client: TestClient, worker: WorkerWire, green_build: dict[str, Any]
) -> None:
    spec = client.get("/openapi.json").json()
    session = client.post("/api/v1/blobs/uploads").headers["location"]
    blob = worker.upload(b"twice")
    answered = [
        ("patch", "/api/v1/blobs/uploads/{upload_id}", client.patch(session, content=b"x")),
        ("get", "/api/v1/blobs/uploads/{upload_id}", client.get(session)),
        ("put", "/api/v1/blobs/{digest}", client.put(f"/api/v1/blobs/{blob}", content=b"twice")),
    ]
    for _ in range(2):
        body = {"build": green_build["id"], "version": "1.0.0"}
        answered.append(("post", "/api/v1/releases", client.post("/api/v1/releases", json=body)))
    undocumented = [
        f"{method.upper()} {path} {resp.status_code}"
        for method, path, resp in answered
        if str(resp.status_code) not in spec["paths"][path][method]["responses"]
    ]
    assert undocumented == []


def test_claiming_an_unknown_job_is_404(worker: WorkerWire) -> None:
    resp = worker.claim(987654)
    assert resp.status_code == 404, resp.text


def test_error_bodies_name_the_problem(
    client: TestClient, submit: Submit, green_build: dict[str, Any]
) -> None:
    assert_error(client.get("/api/v1/builds/999"), 404, "NotFound")
    assert_error(client.get("/api/v1/jobs/999"), 404, "NotFound")
    cancel = client.post(f"/api/v1/builds/{green_build['id']}/cancel")
    assert "already finished" in assert_error(cancel, 409, "Conflict")["detail"]
    bad_version = {"build": green_build["id"], "version": "not a version"}
    assert_error(client.post("/api/v1/releases", json=bad_version), 422, "InvalidRequest")
    # Validation errors: one line naming where, not FastAPI's list of dicts.
    body = assert_error(client.post("/api/v1/builds", json={}), 422, "ValidationError")
    assert body["detail"] == "body.repo: Field required"
    body = assert_error(client.get("/api/v1/builds/abc"), 422, "ValidationError")
    assert body["detail"].startswith("path.build_id: ")
    garbled = client.post(
        "/api/v1/builds", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_error(garbled, 422, "ValidationError")
    # Routes that do not exist answer the same shape.
    assert client.get("/api/v1/nothing").json() == {"detail": "Not Found", "error": "NotFound"}


def test_huge_ids_are_not_server_errors(app: FastAPI, client: TestClient) -> None:
    raw = TestClient(app, raise_server_exceptions=False)
    resp = raw.get("/api/v1/builds/" + "9" * 30)
    assert "Traceback" not in resp.text
    assert resp.status_code in (404, 422), resp.text


def test_default_dispatcher_is_celery(tmp_path: Path) -> None:
    """Without ``dispatcher=`` the app queues on Celery, as `farm api` and `farm up` do."""
    app = create_app(farm_settings(tmp_path / "farm"))
    assert isinstance(app.state.coordinator.dispatcher, CeleryDispatcher)
    assert app.state.celery is app.state.coordinator.dispatcher.app


def test_lifespan_recovers_pending_jobs_after_a_restart(tmp_path: Path) -> None:
    """A restarted API re-dispatches what was pending (its watchdog thread starts at once)."""
    settings = farm_settings(tmp_path / "farm")
    repo = make_repo(tmp_path / "shop", {".farm-ci.yml": PIPELINE})
    first = RecordingDispatcher()
    with TestClient(create_app(settings, dispatcher=first)) as http:
        build = http.post("/api/v1/builds", json={"repo": str(repo)}).json()
    compile_id = job_id(build, "compile")
    assert [d.job_id for d in first.sent] == [compile_id]

    again = RecordingDispatcher()
    with TestClient(create_app(settings, dispatcher=again)) as http:
        redo = again.wait_for(lambda d: d.job_id == compile_id, timeout=10)
        assert redo.attempt == 1
        # The job is still claimable once, by whichever message arrives first.
        worker = WorkerWire(http)
        assert worker.claim(compile_id).status_code == 200
        assert worker.claim(compile_id).status_code == 409
