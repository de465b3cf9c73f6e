"""``/api/v1/builds``: submit, read, list, cancel, deliverable."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tests.farmtest import commit_files, make_repo
from tests.unit.api.conftest import (
    BAD_PIPELINE,
    RecordingDispatcher,
    Submit,
    TestClient,
    WorkerWire,
    job_id,
)


def test_submit_answers_201_with_the_build_and_queues_its_first_job(
    client: TestClient, repo: Path, dispatcher: RecordingDispatcher
) -> None:
    resp = client.post(
        "/api/v1/builds",
        json={"repo": str(repo), "ref": "main", "variables": {"GREETING": "hi"}},
    )
    assert resp.status_code == 201, resp.text
    build = resp.json()
    assert resp.headers["location"] == f"/api/v1/builds/{build['id']}"
    assert build["project"] == "shop" and build["ref"] == "main"
    assert len(build["commit"]) == 40 and build["pipeline_file"] == ".farm-ci.yml"
    assert build["snapshot_digest"].startswith("sha256:")
    assert build["stages"] == [".pre", "build", "test", "deploy", ".post"]
    assert build["status"] == "pending" and build["deliverable"] is None
    jobs = {j["name"]: j for j in build["jobs"]}
    assert {n: j["status"] for n, j in jobs.items()} == {
        "compile": "pending",
        "unit": "created",
        "deploy": "created",
    }
    assert jobs["deploy"]["when"] == "manual" and jobs["compile"]["attempt"] == 1
    # Dynamic dispatch: only the ready job went to the broker.
    [sent] = dispatcher.sent
    assert (sent.job_id, sent.attempt, sent.build_id) == (jobs["compile"]["id"], 1, build["id"])
    assert sent.queue and sent.countdown is None


def test_secrets_reach_no_document(client: TestClient, submit: Submit) -> None:
    build = submit(secrets={"TOKEN": "s3cr3t-value"})
    assert "s3cr3t-value" not in client.get(f"/api/v1/builds/{build['id']}").text


def test_bad_pipeline_is_422_naming_file_and_line(
    client: TestClient, tmp_path: Path, dispatcher: RecordingDispatcher
) -> None:
    bad = make_repo(tmp_path / "bad", {".farm-ci.yml": BAD_PIPELINE})
    resp = client.post("/api/v1/builds", json={"repo": str(bad)})
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["error"] == "PipelineError"
    assert body["detail"].startswith(".farm-ci.yml:4:")
    assert "nope" in body["detail"]
    assert body["problems"] and body["problems"][0].startswith(".farm-ci.yml:4:")
    # Nothing half-made: no build, nothing dispatched.
    assert client.get("/api/v1/builds").json() == [] and dispatcher.sent == []


def test_unreadable_sources_are_422(client: TestClient, tmp_path: Path, repo: Path) -> None:
    plain = make_repo(tmp_path / "plain", {"README": "no pipeline\n"})
    cases: list[tuple[dict[str, Any], str]] = [
        ({"repo": str(tmp_path / "missing")}, "does not exist"),
        ({"repo": str(repo), "ref": "no-such-branch"}, "no-such-branch"),
        ({"repo": str(repo), "commit": "0" * 40}, "does not exist"),
        ({"repo": str(plain)}, "no .farm-ci.yml or .gitlab-ci.yml"),
    ]
    for body, words in cases:
        resp = client.post("/api/v1/builds", json=body)
        assert resp.status_code == 422, (body, resp.text)
        assert resp.json()["error"] == "SourceError" and words in resp.json()["detail"]


def test_workflow_rules_that_create_nothing_are_422(client: TestClient, tmp_path: Path) -> None:
    pipeline = "workflow:\n  rules:\n    - if: $CI_COMMIT_BRANCH == 'release'\na:\n  script: [x]\n"
    quiet = make_repo(tmp_path / "quiet", {".farm-ci.yml": pipeline})
    resp = client.post("/api/v1/builds", json={"repo": str(quiet)})
    assert resp.status_code == 422 and resp.json()["error"] == "PipelineFilteredOut"


def test_get_and_list_builds(client: TestClient, submit: Submit, tmp_path: Path) -> None:
    first = submit()
    other = make_repo(tmp_path / "other", {".farm-ci.yml": "a:\n  script: [x]\n"})
    second = submit(other)
    got = client.get(f"/api/v1/builds/{first['id']}").json()
    assert got["id"] == first["id"] and [j["name"] for j in got["jobs"]] == [
        "compile",
        "unit",
        "deploy",
    ]
    listed = client.get("/api/v1/builds").json()
    assert [b["id"] for b in listed] == [second["id"], first["id"]]  # newest first
    assert [b["id"] for b in client.get("/api/v1/builds?project=shop").json()] == [first["id"]]
    assert client.get("/api/v1/builds?ref=nope").json() == []
    assert len(client.get("/api/v1/builds?limit=1").json()) == 1


def test_a_build_polled_without_its_jobs(client: TestClient, submit: Submit) -> None:
    build = submit()
    full = client.get(f"/api/v1/builds/{build['id']}").json()
    light = client.get(f"/api/v1/builds/{build['id']}?jobs=false")
    assert light.status_code == 200 and light.json()["jobs"] == []
    assert {k: v for k, v in light.json().items() if k not in ("jobs", "stuck_reason")} == {
        k: v for k, v in full.items() if k not in ("jobs", "stuck_reason")
    }
    assert client.get(f"/api/v1/builds/{build['id']}?jobs=maybe").status_code == 422
    assert client.get("/api/v1/builds/424242?jobs=false").status_code == 404


def test_unknown_build_is_404(client: TestClient) -> None:
    for method, path in (
        ("GET", "/api/v1/builds/424242"),
        ("POST", "/api/v1/builds/424242/cancel"),
        ("GET", "/api/v1/builds/424242/deliverable"),
    ):
        resp = client.request(method, path)
        assert resp.status_code == 404, (path, resp.text)
        assert resp.json() == {"detail": "build 424242 does not exist", "error": "NotFound"}


def test_cancel_then_cancel_again_is_409(
    client: TestClient, submit: Submit, worker: WorkerWire
) -> None:
    build = submit()
    compile_id = job_id(build, "compile")
    assert worker.claim(compile_id).status_code == 200
    resp = client.post(f"/api/v1/builds/{build['id']}/cancel")
    assert resp.status_code == 200, resp.text
    canceled = resp.json()
    assert canceled["status"] == "canceled"
    assert {j["status"] for j in canceled["jobs"]} == {"canceled"}
    # The running attempt's worker learns it must stop at its next heartbeat.
    assert worker.log(compile_id, 1, "still here\n").json()["continue"] is False
    again = client.post(f"/api/v1/builds/{build['id']}/cancel")
    assert again.status_code == 409 and "already finished" in again.json()["detail"]


def test_deliverable_of_a_green_build(client: TestClient, green_build: dict[str, Any]) -> None:
    build_id = green_build["id"]
    ref = green_build["deliverable"]
    assert ref["url"] == f"/api/v1/builds/{build_id}/deliverable"
    resp = client.get(ref["url"])
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
    digest = "sha256:" + hashlib.sha256(resp.content).hexdigest()
    assert digest == ref["digest"] == resp.headers["docker-content-digest"]
    manifest = json.loads(resp.content)
    assert manifest["build"] == build_id and manifest["commit"] == green_build["commit"]
    compile_arts = [a for a in manifest["artifacts"] if a["job"] == "compile"]
    assert [a["name"] for a in compile_arts] == ["compile"]
    # The same bytes are an artifact of the build.
    assert client.get(ref["blob"]).content == resp.content


def test_no_deliverable_until_green(client: TestClient, submit: Submit) -> None:
    build = submit()
    resp = client.get(f"/api/v1/builds/{build['id']}/deliverable")
    assert resp.status_code == 404 and "no deliverable (status pending)" in resp.json()["detail"]


def test_a_new_commit_is_a_new_build(client: TestClient, submit: Submit, repo: Path) -> None:
    first = submit()
    sha = commit_files(repo, {"README": "changed\n"})
    second = submit()
    assert second["commit"] == sha != first["commit"]
    pinned = submit(commit=first["commit"])
    assert pinned["commit"] == first["commit"]
