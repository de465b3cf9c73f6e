"""Input from the network is bounded, and nothing a client sends answers a 5xx.

Ids out of range, control characters, paths the host cannot look up, bodies over the
cap, a locked database, an unexpected exception: each answers a documented status with
the one error body ``{detail, error}``, and nothing quoted from the request fills the log.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

import farm.api.app as api_app
from farm.api.limits import MAX_ID
from farm.db.session import make_engine
from tests.unit.api.conftest import (
    RecordingDispatcher,
    Submit,
    TestClient,
    WorkerWire,
    farm_settings,
)


def refused(resp: httpx.Response, status: int = 422, error: str = "ValidationError") -> str:
    """Assert the one error shape; its ``detail``."""
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    assert body["error"] == error, body
    assert isinstance(body["detail"], str) and "\n" not in body["detail"]
    assert "Traceback" not in resp.text
    return str(body["detail"])


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/builds/0",
        f"/api/v1/builds/{MAX_ID + 1}",
        "/api/v1/builds/" + "9" * 30,
        f"/api/v1/jobs/{2**63}",
        "/api/v1/jobs/-1/log",
        "/api/v1/jobs/1/log?after=-1",
        f"/api/v1/jobs/1/log?attempt={2**40}",
        f"/api/v1/artifacts?build={2**64}",
        f"/api/v1/rollouts/{2**63 - 1}",
        f"/api/v1/builds/{2**63}/provenance",
    ],
)
def test_ids_out_of_range_are_422(client: TestClient, url: str) -> None:
    detail = refused(client.get(url))
    assert "less than or equal" in detail or "greater than" in detail, detail


def test_ids_in_range_that_name_nothing_are_404(client: TestClient) -> None:
    refused(client.get(f"/api/v1/builds/{MAX_ID}"), 404, "NotFound")
    refused(client.post(f"/api/v1/jobs/{MAX_ID}/play"), 404, "NotFound")
    body = {"build": MAX_ID + 1, "version": "1.0"}
    assert "body.build" in refused(client.post("/api/v1/releases", json=body))


@pytest.mark.parametrize(
    ("field", "body"),
    [
        ("body.repo", {"repo": "shop\x00"}),
        ("body.ref", {"repo": ".", "ref": "main\x00"}),
        ("body.commit", {"repo": ".", "commit": "HEAD\x1b[2J"}),
        ("body.ref", {"repo": ".", "ref": "a\nb"}),
        ("body.variables", {"repo": ".", "variables": {"K\x00": "v"}}),
        ("body.variables", {"repo": ".", "variables": {"A=B": "v"}}),
        ("body.variables.K", {"repo": ".", "variables": {"K": "v\x00"}}),
        ("body.secrets.K", {"repo": ".", "secrets": {"K": "\x7f"}}),
        ("body.ref", {"repo": ".", "ref": "r" * 256}),
    ],
)
def test_control_characters_and_long_strings_are_refused(
    client: TestClient, field: str, body: dict[str, Any]
) -> None:
    detail = refused(client.post("/api/v1/builds", json=body))
    assert detail.startswith(field), detail
    assert "\x00" not in detail and "\x1b" not in detail  # the input is never echoed raw


def test_multiline_variable_values_are_fine(submit: Submit) -> None:
    build = submit(variables={"CERT": "-----BEGIN-----\n\tabc\r\n-----END-----"})
    assert build["status"] == "pending"


@pytest.mark.parametrize(
    ("repo", "says"),
    [
        ("/tmp/" + "a" * 256, "component is over 255 bytes"),
        ("/" + "/".join(["é" * 100] * 21), "4096 bytes or more"),
        ("~no-such-user-here/shop", "no such user"),
        ("r" * 4097, "at most 4096 characters"),
    ],
)
def test_repo_paths_the_host_cannot_look_up_are_422(
    client: TestClient, repo: str, says: str
) -> None:
    assert says in refused(client.post("/api/v1/builds", json={"repo": repo}))


def test_path_and_query_strings_are_bounded(client: TestClient) -> None:
    refused(client.get("/api/v1/releases/shop%00/1.0"))
    refused(client.get("/api/v1/worker/caches/shop/" + "k" * 256))
    refused(client.get("/api/v1/builds", params={"ref": "main\n"}))
    refused(client.get("/api/v1/artifacts", params={"commit": "c" * 65}))
    refused(client.get("/api/v1/deliver/shop", params={"ip": "127.0.0.1\x00"}))
    # A digest that is not one names no artifact (never reaches the database).
    refused(client.get("/api/v1/artifacts/sha256:%00"), 404, "NotFound")


@pytest.fixture
def small_app(tmp_path: Path) -> FastAPI:
    """An app whose JSON bodies are capped at 2 KiB and worker bodies at 8 KiB."""
    settings = farm_settings(
        tmp_path / "farm", max_request_bytes=2048, max_worker_request_bytes=8192
    )
    return create(settings)


def create(settings: Any) -> FastAPI:
    return api_app.create_app(settings, dispatcher=RecordingDispatcher())


def test_bodies_over_the_cap_are_413_before_being_read(
    small_app: FastAPI, submit: Submit, caplog: pytest.LogCaptureFixture
) -> None:
    big = {"repo": "/nowhere", "variables": {"V": "x" * 4000}}
    with TestClient(small_app) as http:
        declared = http.post("/api/v1/builds", json=big)
        assert "FARM_MAX_REQUEST_BYTES" in refused(declared, 413, "RequestTooLarge")

        def chunked() -> Iterator[bytes]:  # no Content-Length: counted while read
            yield b'{"repo": "/nowhere", "variables": {"V": "'
            for _ in range(10):
                yield b"x" * 500
            yield b'"}}'

        streamed = http.post(
            "/api/v1/builds", content=chunked(), headers={"content-type": "application/json"}
        )
        refused(streamed, 413, "RequestTooLarge")
        # Worker routes have their own, larger cap; the blob routes stream under theirs.
        worker = WorkerWire(http)
        assert worker.log(1, 1, "y" * 4000).status_code == 200
        over = worker.log(1, 1, "y" * 9000)
        assert "FARM_MAX_WORKER_REQUEST_BYTES" in refused(over, 413, "RequestTooLarge")
        assert worker.upload(b"z" * 10_000).startswith("sha256:")
    assert not any("xxxxxxxxxx" in r.getMessage() for r in caplog.records)


def test_a_body_that_is_not_utf8_is_a_documented_400(client: TestClient) -> None:
    resp = client.post(
        "/api/v1/builds", content=b"\xff\xfe{", headers={"content-type": "application/json"}
    )
    refused(resp, 400, "BadRequest")
    spec = client.get("/openapi.json").json()
    assert "400" in spec["paths"]["/api/v1/builds"]["post"]["responses"]


@pytest.fixture
def busy_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, Path]]:
    """An app whose SQLite waits only 0.2 s for a lock (so a held lock shows in tests)."""
    monkeypatch.setattr(api_app, "make_engine", lambda url: make_engine(url, busy_timeout=0.2))
    settings = farm_settings(tmp_path / "farm")
    with TestClient(create(settings)) as http:
        yield http, tmp_path / "farm" / "farm.db"


def hold_write_lock(db: Path, seconds: float) -> threading.Thread:
    """Another process's writer: holds the database's write lock for ``seconds``."""
    locked = threading.Event()

    def hold() -> None:
        con = sqlite3.connect(db, isolation_level=None)
        con.execute("BEGIN IMMEDIATE")
        locked.set()
        time.sleep(seconds)
        con.execute("COMMIT")
        con.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert locked.wait(5)
    return thread


def test_a_locked_database_is_waited_for_then_503_never_500(
    busy_app: tuple[TestClient, Path],
) -> None:
    http, db = busy_app
    worker = WorkerWire(http)
    digest = worker.upload(b"cache")
    url = "/api/v1/worker/caches/shop/deps"
    body = {"digest": digest, "size": 5}
    # Locked for longer than one busy timeout: the write transaction's start is retried.
    briefly = hold_write_lock(db, 0.4)
    assert http.put(url, json=body).status_code == 200
    briefly.join()
    # Locked for longer than every retry: 503 with Retry-After, the client tries later.
    long = hold_write_lock(db, 4.0)
    try:
        resp = http.put(url, json=body)
    finally:
        long.join()
    assert "retry" in refused(resp, 503, "ServiceUnavailable")
    assert resp.headers["retry-after"] == "1"
    assert http.put(url, json=body).status_code == 200


def test_an_unexpected_exception_is_a_json_500_logged_bounded(
    app: FastAPI, client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    def boom() -> int:
        raise RuntimeError("quoted input " + "q" * 1_000_000)

    app.state.store.count_builds = boom
    with caplog.at_level(logging.ERROR, logger="farm.api"):
        resp = client.get("/healthz")
    assert "internal error (logged as" in refused(resp, 500, "InternalError")
    logged = [r.getMessage() for r in caplog.records if "unexpected error" in r.getMessage()]
    assert len(logged) == 1 and "RuntimeError: quoted input" in logged[0]
    assert len(logged[0]) < 20_000  # the message is cut; the frames are kept


def test_openapi_documents_every_error_as_the_error_body(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert schemas["ErrorBody"]["required"] == ["detail", "error"]
    operations = [
        (method, path, op) for path, ops in spec["paths"].items() for method, op in ops.items()
    ]
    for method, path, op in operations:
        where = f"{method.upper()} {path}"
        assert "503" in op["responses"], where
        if op.get("parameters") or op.get("requestBody"):
            assert "422" in op["responses"], where
        if "application/json" in op.get("requestBody", {}).get("content", {}):
            assert "413" in op["responses"], where
        for status, response in op["responses"].items():
            if int(status) >= 400:
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (where, status)
                assert set(response["content"]) == {"application/json"}, (where, status)


def test_claiming_a_stale_attempt_of_a_real_job_is_still_409(
    worker: WorkerWire, submit: Submit
) -> None:
    build = submit()
    job = build["jobs"][0]["id"]
    assert worker.claim(job).status_code == 200
    refused(worker.claim(job), 409, "Conflict")
    refused(worker.claim(2**31), 422)
