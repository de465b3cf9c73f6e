"""Tokens and scopes on the real app: every route needs its scope, workers hold attempts.

Auth is on here, as by default; the other API unit tests turn it off to test routes.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import RecordingDispatcher, WorkerWire, farm_settings
from fastapi import FastAPI
from fastapi.testclient import TestClient

from farm.api.app import create_app
from farm.api.auth import PUBLIC_PATHS
from farm.db.tokens import TokenDb
from farm.domain.auth import Scope
from farm.errors import ConfigError


@pytest.fixture
def secured(tmp_path: Path, dispatcher: RecordingDispatcher) -> FastAPI:
    return create_app(farm_settings(tmp_path / "farm", auth=True), dispatcher=dispatcher)


@pytest.fixture
def anon(secured: FastAPI) -> Iterator[TestClient]:
    with TestClient(secured) as http:
        yield http


def tokens(app: FastAPI) -> TokenDb:
    db: TokenDb = app.state.auth.tokens
    return db


def bearer(app: FastAPI, *scopes: Scope, name: str = "t") -> dict[str, str]:
    _, token = tokens(app).create(name, scopes, created_by="test")
    return {"Authorization": f"Bearer {token}"}


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_without_a_token_every_non_public_route_answers_401(anon: TestClient) -> None:
    """Walks the API's own description: a route that forgot its scope would not say 401."""
    checked = 0
    for path, operations in anon.get("/openapi.json").json()["paths"].items():
        if path in PUBLIC_PATHS:
            continue
        for method in operations:
            resp = anon.request(method.upper(), _concrete(path))
            assert resp.status_code == 401, (method, path, resp.text)
            assert resp.headers["www-authenticate"].startswith("Bearer")
            if method != "head":  # a HEAD answer has no body
                assert resp.json()["error"] == "Unauthorized"
            checked += 1
    assert checked > 50


def test_the_public_paths_are_the_only_ones_without_a_scope(anon: TestClient) -> None:
    paths = set(anon.get("/openapi.json").json()["paths"])
    open_ones = {p for p in paths if p in PUBLIC_PATHS}
    assert open_ones == {
        "/healthz",
        "/api/v1/keys/provenance.pub",
        "/api/v1/deliver/{project}",
        "/api/v1/hooks/github",
        "/api/v1/hooks/gitlab",
    }


def test_public_routes_answer_without_a_token(anon: TestClient) -> None:
    assert anon.get("/healthz").status_code == 200
    assert anon.get("/openapi.json").status_code == 200
    assert anon.get("/api/v1/keys/provenance.pub").status_code == 200
    assert anon.get("/api/v1/deliver/shop", params={"ip": "127.0.0.1"}).status_code in (200, 404)


def test_a_bad_expired_or_revoked_token_is_401(secured: FastAPI, anon: TestClient) -> None:
    assert anon.get("/api/v1/builds", headers={"Authorization": "Bearer farm_nope"}).json()[
        "detail"
    ] == ("unknown API token")
    info, token = tokens(secured).create("gone", (Scope.READ,), created_by="test")
    auth = {"Authorization": f"Bearer {token}"}
    assert anon.get("/api/v1/builds", headers=auth).status_code == 200
    tokens(secured).revoke(info.id)
    secured.state.auth._cache.clear()  # the short lookup cache would hide it for 5 s
    resp = anon.get("/api/v1/builds", headers=auth)
    assert resp.status_code == 401 and "revoked" in resp.json()["detail"]


@pytest.mark.parametrize(
    ("scope", "method", "path", "allowed"),
    [
        (Scope.READ, "GET", "/api/v1/builds", True),
        (Scope.READ, "POST", "/api/v1/builds", False),
        (Scope.SUBMIT, "GET", "/api/v1/builds", True),
        (Scope.SUBMIT, "POST", "/api/v1/releases", False),
        (Scope.DEPLOY, "POST", "/api/v1/builds", False),
        (Scope.DEPLOY, "GET", "/api/v1/releases", True),
        (Scope.ADMIN, "GET", "/api/v1/tokens", True),
        (Scope.DEPLOY, "GET", "/api/v1/tokens", False),
        (Scope.ADMIN, "POST", "/api/v1/worker/jobs/1/claim", False),  # only workers claim
        (Scope.WORKER, "GET", "/api/v1/builds", False),  # a worker token reads no builds
        (Scope.WORKER, "POST", "/api/v1/admin/gc", False),
    ],
)
def test_scopes(
    secured: FastAPI, anon: TestClient, scope: Scope, method: str, path: str, allowed: bool
) -> None:
    resp = anon.request(method, path, headers=bearer(secured, scope), json={})
    assert (resp.status_code != 403) is allowed, resp.text


def test_a_local_path_needs_an_admin_token(secured: FastAPI, anon: TestClient, repo: Path) -> None:
    submit = bearer(secured, Scope.SUBMIT)
    resp = anon.post("/api/v1/builds", json={"repo": str(repo)}, headers=submit)
    assert resp.status_code == 403 and "admin" in resp.json()["detail"]
    resp = anon.post("/api/v1/builds", json={"repo": f"file://{repo}"}, headers=submit)
    assert resp.status_code == 403
    admin = bearer(secured, Scope.ADMIN)
    assert anon.post("/api/v1/builds", json={"repo": str(repo)}, headers=admin).status_code == 201


def test_forged_claim_and_finish_are_refused(
    secured: FastAPI, anon: TestClient, repo: Path
) -> None:
    """The attack from the issue: a made-up worker claims, then reports exit 0."""
    build = anon.post(
        "/api/v1/builds", json={"repo": str(repo)}, headers=bearer(secured, Scope.ADMIN)
    ).json()
    job = build["jobs"][0]["id"]
    # No token at all, or a person's token with every scope but worker:
    for headers in ({}, bearer(secured, Scope.ADMIN)):
        anon.headers.clear()
        anon.headers.update(headers)
        assert WorkerWire(anon, name="evil").claim(job).status_code in (401, 403)
        assert WorkerWire(anon, name="evil").finish(job).status_code in (401, 403)
    # A real worker claims; another worker (its own token) cannot report on that attempt,
    # nor can the same token without the job token the claim answered.
    anon.headers.clear()
    anon.headers.update(bearer(secured, Scope.WORKER, name="w1"))
    honest = WorkerWire(anon, name="w1")
    claimed = honest.claim(job)
    assert claimed.status_code == 200 and claimed.json()["job_token"].startswith("farm_")
    with TestClient(secured) as other_http:
        other_http.headers.update(bearer(secured, Scope.WORKER, name="w2"))
        other = WorkerWire(other_http, name="w2")
        other.job_tokens[job] = claimed.json()["job_token"]  # even a leaked job token
        assert other.finish(job).status_code == 403
        assert other.log(job, 1, "forged").status_code == 403
    blind = WorkerWire(anon, name="w1")  # the right worker token, no job token
    assert blind.finish(job).status_code == 403
    assert (
        anon.get(f"/api/v1/jobs/{job}", headers=bearer(secured, Scope.READ)).json()["status"]
        == "running"
    )
    assert honest.log(job, 1, "hello\n").status_code == 200
    assert honest.finish(job, exit_code=1).json()["status"] == "failed"


def test_local_tokens_are_written_private_and_work(secured: FastAPI, tmp_path: Path) -> None:
    folder = tmp_path / "farm" / "tokens"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name, scope in (("admin", Scope.ADMIN), ("worker", Scope.WORKER)):
        path = folder / f"{name}.token"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        info = tokens(secured).lookup(path.read_text().strip())
        assert info is not None and info.scopes == (scope,)
    # A second start keeps working tokens; a revoked one is replaced.
    before = (folder / "admin.token").read_text()
    tokens(secured).ensure_local(tmp_path / "farm")
    assert (folder / "admin.token").read_text() == before
    admin = tokens(secured).lookup(before.strip())
    assert admin is not None
    tokens(secured).revoke(admin.id)
    tokens(secured).ensure_local(tmp_path / "farm")
    assert (folder / "admin.token").read_text() != before


def test_no_auth_beyond_loopback_refuses_to_start(tmp_path: Path) -> None:
    for host in ("0.0.0.0", "192.0.2.1", "farm.example"):
        with pytest.raises(ConfigError, match=r"^refusing to listen on .*FARM_AUTH=false"):
            create_app(farm_settings(tmp_path / "x", auth=False, api_host=host))
    create_app(farm_settings(tmp_path / "y", auth=False, api_host="::1"))  # loopback: fine
    create_app(farm_settings(tmp_path / "z", auth=True, api_host="0.0.0.0"))  # auth on: fine


def test_token_routes_show_a_token_once(secured: FastAPI, anon: TestClient) -> None:
    admin = bearer(secured, Scope.ADMIN)
    made = anon.post(
        "/api/v1/tokens",
        json={"name": "ci", "scopes": ["submit"], "expires_in_days": 1},
        headers=admin,
    )
    assert made.status_code == 201, made.text
    token: str = made.json()["token"]
    listed: list[dict[str, Any]] = anon.get("/api/v1/tokens", headers=admin).json()
    assert token not in str(listed)
    mine = next(t for t in listed if t["id"] == made.json()["id"])
    assert mine["scopes"] == ["submit"] and mine["state"] == "active" and mine["expires_at"]
    bad = anon.post(
        "/api/v1/tokens", json={"name": "x", "scopes": ["worker", "read"]}, headers=admin
    )
    assert bad.status_code == 422
    assert anon.delete(f"/api/v1/tokens/{mine['id']}", headers=admin).json()["state"] == "revoked"


def test_openapi_documents_the_bearer_scheme(anon: TestClient) -> None:
    doc = anon.get("/openapi.json").json()
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    claim = doc["paths"]["/api/v1/worker/jobs/{job_id}/claim"]["post"]
    assert claim["security"] == [{"bearer": []}] and "401" in claim["responses"]
    assert "security" not in doc["paths"]["/healthz"]["get"]
