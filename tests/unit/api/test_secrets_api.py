"""Project secrets over the API: values go in, never come out, and reach only the claim
of a job of that project's bound repository (protected ones only on protected refs)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from farm.api.app import create_app
from farm.domain.auth import Scope
from farm.domain.messages import PROTOCOL_VERSION
from farm.domain.records import BuildRecord
from farm.worker.app import RUN_JOB, CeleryDispatcher
from tests.farmtest import commit_files, git, make_repo
from tests.unit.api.conftest import (
    PIPELINE,
    RecordingCelery,
    Submit,
    WorkerWire,
    farm_settings,
    job_id,
)

OPEN = "0pen-pr0ject-value"  # unprotected: every ref
GUARDED = "guarded-depl0y-token"  # protected: protected refs only
BASE = "/api/v1/projects/shop"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Auth off: every caller holds every scope (the auth tests below turn it on)."""
    return {"auth": False}


def put(client: TestClient, name: str, value: str, project: str = "shop", **flags: Any) -> Any:
    return client.put(f"/api/v1/projects/{project}/secrets/{name}", json={"value": value, **flags})


def bind(client: TestClient, project: str, repo: Path | str) -> Any:
    resp = client.put(f"/api/v1/projects/{project}/repo", json={"repo": str(repo)})
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.fixture
def bound(client: TestClient, repo: Path) -> None:
    """Project ``shop`` bound to the ``repo`` fixture (what ``submit`` builds)."""
    bind(client, "shop", repo)


@pytest.fixture
def worker(client: TestClient) -> WorkerWire:
    """A worker speaking this API's protocol version (whatever the shared helper says)."""
    return WorkerWire(client, protocol=PROTOCOL_VERSION)


@pytest.fixture
def shop_secrets(client: TestClient, bound: None) -> None:
    assert put(client, "OPEN_TOKEN", OPEN).status_code == 201
    assert put(client, "DEPLOY_TOKEN", GUARDED, protected=True).status_code == 201


def test_put_list_delete_never_serve_values(client: TestClient) -> None:
    repo = "https://git.example.com/group/shop.git"
    created = put(client, "TOKEN", OPEN, project="group/shop", repo=repo)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["project"] == "group/shop" and body["name"] == "TOKEN"
    assert (body["protected"], body["masked"]) == (False, True)
    replaced = put(client, "TOKEN", GUARDED, project="group/shop", protected=True)
    assert replaced.status_code == 200 and replaced.json()["protected"] is True
    listed = client.get("/api/v1/projects/group/shop/secrets")
    assert listed.status_code == 200
    assert (listed.json()["project"], listed.json()["repo"]) == ("group/shop", repo)
    assert [(r["name"], r["protected"], r["masked"]) for r in listed.json()["secrets"]] == [
        ("TOKEN", True, True)
    ]
    assert set(listed.json()["secrets"][0]) == {
        "project",
        "name",
        "protected",
        "masked",
        "created_at",
        "updated_at",
    }
    for text in (created.text, replaced.text, listed.text):
        assert OPEN not in text and GUARDED not in text
    other = client.get("/api/v1/projects/group/secrets").json()  # another project
    assert other == {"project": "group", "repo": None, "secrets": []}
    assert client.delete("/api/v1/projects/group/shop/secrets/TOKEN").status_code == 204
    gone = client.delete("/api/v1/projects/group/shop/secrets/TOKEN")
    assert gone.status_code == 404 and gone.json()["error"] == "NotFound"


def test_openapi_documents_the_routes_and_hides_values(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    one = paths["/api/v1/projects/{project}/secrets/{name}"]
    assert {"200", "201", "422"} <= set(one["put"]["responses"])
    assert {"204", "404"} <= set(one["delete"]["responses"])
    assert {"409"} <= set(one["put"]["responses"])
    assert set(paths["/api/v1/projects/{project}/protected-refs"]) == {"get", "put", "delete"}
    assert set(paths["/api/v1/projects/{project}/repo"]) == {"get", "put"}
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    listed = paths["/api/v1/projects/{project}/secrets"]["get"]["responses"]["200"]
    ref = listed["content"]["application/json"]["schema"]["$ref"]
    doc = schemas[ref.rsplit("/", 1)[1]]
    assert {"project", "repo", "secrets"} == set(doc["properties"])
    item = doc["properties"]["secrets"]["items"]["$ref"]
    assert "value" not in schemas[item.rsplit("/", 1)[1]]["properties"]


@pytest.mark.usefixtures("bound")
def test_a_short_masked_value_is_refused_with_a_clear_422(client: TestClient) -> None:
    resp = put(client, "PIN", "1234567")
    assert resp.status_code == 422
    assert resp.json()["error"] == "InvalidRequest"
    assert "cannot be masked" in resp.json()["detail"] and "at least 8" in resp.json()["detail"]
    assert "1234567" not in resp.text
    assert put(client, "PIN", "1234567", masked=False).status_code == 201


@pytest.mark.parametrize("name", ["1ABC", "A-B", "A.B", "Ä"])
def test_names_must_be_variable_names(client: TestClient, name: str) -> None:
    resp = put(client, name, OPEN)
    assert resp.status_code == 422 and "variable name" in resp.json()["detail"]


@pytest.mark.usefixtures("bound")
def test_unknown_fields_and_huge_values_are_refused_without_echo(client: TestClient) -> None:
    resp = client.put(f"{BASE}/secrets/X", json={"value": OPEN, "hidden": True})
    assert resp.status_code == 422
    huge = "v" * (64 * 1024 + 1)
    resp = put(client, "HUGE", huge, masked=False)
    assert resp.status_code == 422 and "vvvvvvvv" not in resp.text


def test_protected_refs_default_set_and_reset(client: TestClient) -> None:
    assert client.get(f"{BASE}/protected-refs").json() == {
        "project": "shop",
        "patterns": ["main", "master"],
        "default": True,
    }
    resp = client.put(f"{BASE}/protected-refs", json={"patterns": ["release/*", "main"]})
    assert resp.status_code == 200
    assert resp.json() == {"project": "shop", "patterns": ["release/*", "main"], "default": False}
    assert client.get(f"{BASE}/protected-refs").json()["patterns"] == ["release/*", "main"]
    none = client.put(f"{BASE}/protected-refs", json={"patterns": []}).json()
    assert none["patterns"] == [] and none["default"] is False
    assert client.delete(f"{BASE}/protected-refs").json()["default"] is True
    bad = client.put(f"{BASE}/protected-refs", json={"patterns": [" main"]})
    assert bad.status_code == 422


def test_a_project_bound_to_no_repository_keeps_no_secrets(client: TestClient) -> None:
    resp = put(client, "TOKEN", OPEN)
    assert resp.status_code == 422 and resp.json()["error"] == "InvalidRequest"
    assert (
        "bind the project to its repository first: farm secret repo shop URL"
        in (resp.json()["detail"])
    )
    assert OPEN not in resp.text
    assert client.get(f"{BASE}/secrets").json() == {"project": "shop", "repo": None, "secrets": []}


def test_binding_the_repository(client: TestClient, repo: Path) -> None:
    assert client.get(f"{BASE}/repo").json() == {"project": "shop", "repo": None}
    assert bind(client, "shop", "git@git.example.com:group/shop.git") == {
        "project": "shop",
        "repo": "git@git.example.com:group/shop.git",
    }
    assert bind(client, "shop", repo) == {"project": "shop", "repo": str(repo)}  # re-bound
    assert client.get(f"{BASE}/repo").json()["repo"] == str(repo)
    assert client.get(f"{BASE}/secrets").json()["repo"] == str(repo)
    for bad in ("shop", "../shop", "https://ci:t0ken@git.example.com/shop.git", "/a/../b"):
        resp = client.put(f"{BASE}/repo", json={"repo": bad})
        assert resp.status_code == 422, (bad, resp.text)
        assert "t0ken" not in resp.text
    assert client.put(f"{BASE}/repo", json={"repo": "/x", "other": 1}).status_code == 422
    # ``repo`` with a secret: the same repository (another spelling) is fine, another is not.
    assert put(client, "TOKEN", OPEN, repo=f"{repo}/").status_code == 201
    clash = put(client, "TOKEN", OPEN, repo="https://evil.example/x/shop.git")
    assert clash.status_code == 409 and clash.json()["error"] == "Conflict"
    assert "farm secret repo shop URL" in clash.json()["detail"]
    assert client.get(f"{BASE}/repo").json()["repo"] == str(repo)


def claim_of(worker: WorkerWire, build: dict[str, Any], name: str = "compile") -> Any:
    resp = worker.claim(job_id(build, name))
    assert resp.status_code == 200, resp.text
    return resp


@pytest.mark.usefixtures("shop_secrets")
def test_a_protected_ref_build_gets_every_secret_masked(
    client: TestClient, worker: WorkerWire, submit: Submit
) -> None:
    claim = claim_of(worker, submit(ref="main")).json()
    env = claim["variables"]
    assert (env["OPEN_TOKEN"], env["DEPLOY_TOKEN"]) == (OPEN, GUARDED)
    assert env["CI_COMMIT_REF_PROTECTED"] == "true"
    assert {OPEN, GUARDED} <= set(claim["masks"])


@pytest.mark.usefixtures("shop_secrets")
def test_a_namesake_repository_gets_none_of_the_projects_secrets(
    client: TestClient, worker: WorkerWire, submit: Submit, tmp_path: Path
) -> None:
    # Another repository called ``shop`` (so project ``shop``), on its protected main.
    evil = make_repo(tmp_path / "evil" / "shop", {".farm-ci.yml": PIPELINE})
    build = submit(evil, ref="main")
    assert build["project"] == "shop"
    claim = claim_of(worker, build)
    env = claim.json()["variables"]
    assert "OPEN_TOKEN" not in env and "DEPLOY_TOKEN" not in env
    assert env["CI_COMMIT_REF_PROTECTED"] == "false"  # main of a namesake is not protected
    assert OPEN not in claim.text and GUARDED not in claim.text  # nor in the masks
    # The bound repository still gets them.
    assert claim_of(worker, submit(ref="main")).json()["variables"]["DEPLOY_TOKEN"] == GUARDED
    # Re-binding the project moves its secrets to the other repository.
    bind(client, "shop", evil)
    assert claim_of(worker, submit(evil)).json()["variables"]["DEPLOY_TOKEN"] == GUARDED
    assert "OPEN_TOKEN" not in claim_of(worker, submit()).json()["variables"]


def test_a_commit_that_is_not_on_the_ref_is_refused(
    client: TestClient, submit: Submit, repo: Path
) -> None:
    first = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "-b", "feature")
    side = commit_files(repo, {"README": "not on main\n"})
    git(repo, "checkout", "-q", "main")
    for body in ({"ref": "main", "commit": side}, {"ref": "main", "commit": side[:10]}):
        resp = client.post("/api/v1/builds", json={"repo": str(repo), **body})
        assert resp.status_code == 422, resp.text
        detail = resp.json()["detail"]
        assert f"commit {body['commit']!r} is not on ref 'main'" in detail, detail
    # No ref: the commit must be on the default branch the build would be named after.
    resp = client.post("/api/v1/builds", json={"repo": str(repo), "commit": side})
    assert resp.status_code == 422 and "is not on ref 'main'" in resp.json()["detail"]
    # The tip, an ancestor, or the ref the commit is on: all fine.
    newer = commit_files(repo, {"README": "on main\n"})
    assert submit(ref="main", commit=newer)["commit"] == newer
    assert submit(ref="main", commit=first)["commit"] == first
    assert submit(ref="feature", commit=side)["ref"] == "feature"
    missing = client.post(
        "/api/v1/builds", json={"repo": str(repo), "ref": "gone", "commit": first}
    )
    assert missing.status_code == 422 and "ref 'gone' does not exist" in missing.json()["detail"]


@pytest.mark.usefixtures("shop_secrets")
def test_other_refs_never_see_protected_secrets(
    client: TestClient, worker: WorkerWire, submit: Submit, repo: Path
) -> None:
    git(repo, "branch", "feature")
    claim = claim_of(worker, submit(ref="feature"))
    env = claim.json()["variables"]
    assert env["OPEN_TOKEN"] == OPEN and "DEPLOY_TOKEN" not in env
    assert env["CI_COMMIT_REF_PROTECTED"] == "false"
    assert GUARDED not in claim.text  # neither as a variable nor as a mask
    assert OPEN in claim.json()["masks"]
    # Protect release/* only: main is no longer protected, release/1 is.
    client.put(f"{BASE}/protected-refs", json={"patterns": ["release/*"]})
    assert GUARDED not in claim_of(worker, submit(ref="main")).text
    git(repo, "branch", "release/1")
    assert claim_of(worker, submit(ref="release/1")).json()["variables"]["DEPLOY_TOKEN"] == GUARDED


@pytest.mark.usefixtures("bound")
def test_unmasked_secrets_are_given_but_not_masked(
    client: TestClient, worker: WorkerWire, submit: Submit
) -> None:
    put(client, "REGION", "eu", masked=False)
    claim = claim_of(worker, submit()).json()
    assert claim["variables"]["REGION"] == "eu" and "eu" not in claim["masks"]


def test_precedence_yaml_then_project_then_build_variables_then_build_secrets(
    client: TestClient, worker: WorkerWire, submit: Submit, tmp_path: Path
) -> None:
    pipeline = (
        "variables: {A: yaml, B: yaml, C: yaml, D: yaml}\n"
        "job:\n  script: [env]\n  variables: {E: job-yaml}\n"
    )
    repo = make_repo(tmp_path / "order", {".farm-ci.yml": pipeline})
    bind(client, "order", repo)
    for name in "ABCDE":
        put(client, name, f"project-{name}-value", project="order")
    build = submit(
        repo, variables={"C": "build-var", "D": "build-var"}, secrets={"D": "build-secret"}
    )
    claim = claim_of(worker, build, "job").json()
    env = claim["variables"]
    assert [env[k] for k in "ABCDE"] == [
        "project-A-value",
        "project-B-value",
        "build-var",
        "build-secret",
        "project-E-value",
    ]
    # A project secret the build overrode is not in the job: it is not sent as a mask.
    assert "project-C-value" not in claim["masks"] and "project-D-value" not in claim["masks"]
    assert "build-secret" in claim["masks"]


@pytest.mark.usefixtures("shop_secrets")
def test_project_secrets_appear_in_no_document_and_not_in_the_database(
    client: TestClient, worker: WorkerWire, submit: Submit, app: FastAPI, tmp_path: Path
) -> None:
    build = submit()
    bid = build["id"]
    worker.run(job_id(build, "compile"), log="compiling\n")
    worker.run(job_id(build, "unit"), log="testing\n")
    assert client.get(f"/api/v1/builds/{bid}").json()["status"] == "success"
    paths = [
        f"/api/v1/builds/{bid}",
        "/api/v1/builds?limit=10",
        f"/api/v1/jobs/{job_id(build, 'compile')}",
        f"/api/v1/jobs/{job_id(build, 'compile')}/log",
        f"/api/v1/builds/{bid}/deliverable",
        f"/api/v1/builds/{bid}/provenance",
        f"{BASE}/secrets",
        f"{BASE}/protected-refs",
        "/openapi.json",
    ]
    for path in paths:
        resp = client.get(path)
        assert resp.status_code == 200, (path, resp.text)
        assert OPEN not in resp.text and GUARDED not in resp.text, path
    data_dir = tmp_path / "farm"
    raw = b"".join(p.read_bytes() for p in data_dir.glob("farm.db*"))
    assert OPEN.encode() not in raw and GUARDED.encode() not in raw
    with sqlite3.connect(data_dir / "farm.db") as conn:
        rows = conn.execute("SELECT value FROM project_secrets").fetchall()
    assert len(rows) == 2 and all(r[0].startswith("gAAAA") for r in rows)
    # The build record (what the dispatcher sees) holds no project secret, and the
    # Celery message carries ids only.
    record: BuildRecord = app.state.store.get_build(bid)
    assert OPEN not in repr(record) and GUARDED not in repr(record)
    celery = RecordingCelery()
    CeleryDispatcher(celery).dispatch(record.jobs[0], record)
    ((name, kwargs),) = celery.sent
    assert name == RUN_JOB and kwargs["args"] == (record.jobs[0].id, record.jobs[0].attempt)
    assert OPEN not in repr(kwargs) and GUARDED not in repr(kwargs)


# --- who may ---------------------------------------------------------------------------


def test_every_route_needs_the_admin_scope(tmp_path: Path) -> None:
    app = create_app(farm_settings(tmp_path / "farm", auth=True, local_tokens=False))
    tokens = app.state.auth.tokens
    _, submitter = tokens.create("ci", (Scope.SUBMIT,), created_by="test")
    _, admin = tokens.create("root", (Scope.ADMIN,), created_by="test")
    calls = [
        ("GET", f"{BASE}/secrets", None),
        ("PUT", f"{BASE}/secrets/TOKEN", {"value": OPEN, "repo": "/srv/git/shop"}),
        ("DELETE", f"{BASE}/secrets/TOKEN", None),
        ("GET", f"{BASE}/protected-refs", None),
        ("PUT", f"{BASE}/protected-refs", {"patterns": ["main"]}),
        ("DELETE", f"{BASE}/protected-refs", None),
        ("GET", f"{BASE}/repo", None),
        ("PUT", f"{BASE}/repo", {"repo": "https://git.example.com/shop.git"}),
    ]
    with TestClient(app) as http:
        for method, path, body in calls:
            anonymous = http.request(method, path, json=body)
            assert anonymous.status_code == 401, (method, path)
            weak = http.request(
                method, path, json=body, headers={"Authorization": f"Bearer {submitter}"}
            )
            assert weak.status_code == 403, (method, path)
            ok = http.request(method, path, json=body, headers={"Authorization": f"Bearer {admin}"})
            assert ok.status_code in (200, 201, 204), (method, path, ok.text)
