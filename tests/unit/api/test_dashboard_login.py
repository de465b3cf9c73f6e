"""Signing in to the dashboard with auth on: pages send a caller without a working token
to the login form and back, the cookie is HttpOnly and SameSite=Strict, ``next`` never
leaves the site, and a change made with the cookie needs the CSRF header."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from farm.api.app import create_app
from farm.api.auth import COOKIE
from farm.api.dashboard.session import local_path
from farm.domain.auth import Scope
from tests.unit.api.conftest import RecordingDispatcher, farm_settings


@pytest.fixture
def secured(tmp_path: Path, dispatcher: RecordingDispatcher) -> FastAPI:
    return create_app(farm_settings(tmp_path / "farm", auth=True), dispatcher=dispatcher)


@pytest.fixture
def anon(secured: FastAPI) -> Iterator[TestClient]:
    with TestClient(secured, follow_redirects=False) as http:
        yield http


def token(app: FastAPI, *scopes: Scope) -> str:
    _, value = app.state.auth.tokens.create("dash", scopes, created_by="test")
    return str(value)


def test_pages_redirect_to_login_and_back(secured: FastAPI, anon: TestClient) -> None:
    resp = anon.get("/builds/7", params={"x": "1"})
    assert resp.status_code == 303
    assert resp.headers["location"] == "/login?next=/builds/7%3Fx%3D1"
    form = anon.get("/login", params={"next": "/builds/7?x=1"})
    assert form.status_code == 200 and 'name="token"' in form.text
    assert 'value="/builds/7?x=1"' in form.text

    bad = anon.post("/login", data={"token": "farm_nope", "next": "/builds/7"})
    assert bad.status_code == 401 and "unknown API token" in bad.text

    good = anon.post("/login", data={"token": token(secured, Scope.READ), "next": "/releases"})
    assert good.status_code == 303 and good.headers["location"] == "/releases"
    cookie = good.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http here; https requests get Secure
    assert anon.get("/releases").status_code == 200  # the cookie now signs the pages
    assert anon.get("/api/v1/builds").status_code == 200  # and the JSON API

    out = anon.post("/logout")
    assert out.status_code == 303 and f'{COOKIE}=""' in out.headers["set-cookie"]


def test_live_fragments_answer_401_not_a_redirect(anon: TestClient) -> None:
    assert anon.get("/builds/1/live").status_code == 401


def test_a_token_without_read_is_refused(secured: FastAPI, anon: TestClient) -> None:
    anon.cookies.set(COOKIE, token(secured, Scope.WORKER))
    assert anon.get("/").status_code == 403


def test_next_stays_on_this_site() -> None:
    assert local_path("/builds/3?a=b") == "/builds/3?a=b"
    for bad in ("https://evil.example", "//evil.example/x", "/\\evil.example", "", None, "x"):
        assert local_path(bad) == "/"
    assert local_path("/a\r\nSet-Cookie: x") == "/"


def test_cookie_changes_need_the_csrf_header(secured: FastAPI, anon: TestClient) -> None:
    anon.cookies.set(COOKIE, token(secured, Scope.SUBMIT))
    # A cross-site form could post this with the cookie: refused without the header.
    refused = anon.post("/api/v1/builds/1/cancel")
    assert refused.status_code == 403 and "X-Requested-With" in refused.json()["detail"]
    # The dashboard's script sends it: the request reaches the route (no such build).
    allowed = anon.post("/api/v1/builds/1/cancel", headers={"X-Requested-With": "farm"})
    assert allowed.status_code == 404
    # Reads need no header, and a bearer token never does.
    assert anon.get("/api/v1/builds").status_code == 200
    anon.cookies.clear()
    bearer = {"Authorization": f"Bearer {token(secured, Scope.SUBMIT)}"}
    assert anon.post("/api/v1/builds/1/cancel", headers=bearer).status_code == 404
