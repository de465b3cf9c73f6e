"""``/api/v1/rollouts`` and ``/api/v1/deliver`` on the real app: a health server on
127.0.0.1, the controller thread ticking, SQLite; no broker, no Docker."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from farm.errors import PlanError
from tests.farmtest import Health, make_repo
from tests.unit.api.conftest import PIPELINE, WorkerWire, job_id

PLAN = """\
scopes:
  canada: [198.51.100.0/24, "2001:db8:ca::/48"]
  usa: [203.0.113.0/24]
steps:
  - scope: canada
    bake: 0
    checks:
      - http: "http://127.0.0.1:{port}/health?scope={{scope}}&version={{version}}"
        samples: 3
        interval: 0.05
        max_failure_ratio: 0.2
  - scope: usa
    bake: 0
    checks:
      - http: "http://127.0.0.1:{port}/health?scope={{scope}}&version={{version}}"
        samples: 3
        interval: 0.05
        max_failure_ratio: 0.2
  - scope: all
"""


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"rollout_tick": 0.05}


def _release(client: Any, worker: WorkerWire, repo: Path, version: str) -> dict[str, Any]:
    build = client.post("/api/v1/builds", json={"repo": str(repo), "no_cache": True}).json()
    worker.run(job_id(build, "compile"), artifacts=[worker.artifact("compile", version.encode())])
    worker.run(job_id(build, "unit"))
    resp = client.post("/api/v1/releases", json={"build": build["id"], "version": version})
    assert resp.status_code == 201, resp.text
    return build


def _wait(client: Any, rid: int, states: set[str], timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        doc: dict[str, Any] = client.get(f"/api/v1/rollouts/{rid}").json()
        if doc["state"] in states:
            return doc
        assert time.monotonic() < deadline, doc
        time.sleep(0.05)


@pytest.fixture
def shop(tmp_path: Path, health: Health) -> Path:
    files = {".farm-ci.yml": PIPELINE, ".farm/rollout.yml": PLAN.format(port=health.port)}
    return make_repo(tmp_path / "shop", files)


def test_a_failing_scope_steps_back_to_the_last_good_one(
    client: Any, worker: WorkerWire, shop: Path, health: Health
) -> None:
    _release(client, worker, shop, "1.0.0")
    _release(client, worker, shop, "1.1.0")
    health.sick = {"usa"}
    resp = client.post("/api/v1/rollouts", json={"project": "shop", "version": "1.1.0"})
    assert resp.status_code == 201, resp.text
    rid = resp.json()["id"]
    doc = _wait(client, rid, {"stepped_back", "aborted", "succeeded"})
    assert doc["state"] == "stepped_back"
    assert doc["previous_version"] == "1.0.0"
    assert doc["steps"][doc["step"]]["scope"] == "canada"
    assert [s["state"] for s in doc["steps"]] == ["passed", "failed", "pending"]
    failed = [h for h in doc["history"] if h["event"] == "checks_failed"]
    assert failed and "usa" in failed[0]["reason"] and "3/3 failed" in failed[0]["reason"]
    assert failed[0]["figures"]["checks"][0]["failures"] == 3

    def version(ip: str) -> str:
        answer = client.get("/api/v1/deliver/shop", params={"ip": ip})
        assert answer.status_code == 200, answer.text
        return str(answer.json()["version"])

    assert version("198.51.100.7") == "1.1.0"  # Canada
    assert version("2001:db8:ca::1") == "1.1.0"
    assert version("203.0.113.9") == "1.0.0"  # USA
    assert version("192.0.2.1") == "1.0.0"  # anywhere else
    geo = client.get("/api/v1/deliver/shop/nginx-geo").text
    assert "198.51.100.0/24" in geo and "203.0.113.0/24" not in geo


def test_healthy_rollout_succeeds_and_everyone_gets_it(
    client: Any, worker: WorkerWire, shop: Path
) -> None:
    _release(client, worker, shop, "1.0.0")
    rid = client.post("/api/v1/rollouts", json={"project": "shop", "version": "1.0.0"}).json()["id"]
    doc = _wait(client, rid, {"succeeded", "stepped_back", "aborted"})
    assert doc["state"] == "succeeded", doc
    answer = client.get("/api/v1/deliver/shop", params={"ip": "192.0.2.1"}).json()
    assert answer["version"] == "1.0.0" and answer["rollout"] == rid
    assert answer["artifacts"], answer


def test_second_rollout_of_a_project_is_refused_while_one_is_active(
    client: Any, worker: WorkerWire, shop: Path, health: Health
) -> None:
    _release(client, worker, shop, "1.0.0")
    _release(client, worker, shop, "1.1.0")
    health.sick = {"canada", "usa"}
    first = client.post("/api/v1/rollouts", json={"project": "shop", "version": "1.1.0"})
    rid = first.json()["id"]
    client.post(f"/api/v1/rollouts/{rid}/pause", json={"actor": "ann"})
    second = client.post("/api/v1/rollouts", json={"project": "shop", "version": "1.0.0"})
    assert second.status_code == 409, second.text
    assert "already has an active rollout" in second.json()["detail"]
    assert len(client.get("/api/v1/rollouts", params={"project": "shop"}).json()) == 1


def test_bad_plan_is_refused_with_file_and_line(
    client: Any, worker: WorkerWire, tmp_path: Path
) -> None:
    plan = "scopes:\n  canada: [10.0.0.0/8]\n  usa: [10.1.0.0/16]\nsteps:\n  - scope: canada\n"
    repo = make_repo(tmp_path / "bad", {".farm-ci.yml": PIPELINE, ".farm/rollout.yml": plan})
    _release(client, worker, repo, "2.0.0")
    resp = client.post("/api/v1/rollouts", json={"project": "bad", "version": "2.0.0"})
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"] == PlanError.__name__
    assert ".farm/rollout.yml:3" in resp.json()["detail"]
    assert client.get("/api/v1/rollouts", params={"project": "bad"}).json() == []


def test_a_build_that_finishes_again_is_not_rolled_out_twice(
    client: Any, worker: WorkerWire, tmp_path: Path, health: Health
) -> None:
    # The first step bakes long: the rollout is still under way when the build finishes again.
    plan = PLAN.format(port=health.port).replace("bake: 0", "bake: 600", 1)
    plan += "auto: {branches: [main]}\n"
    repo = make_repo(tmp_path / "cd", {".farm-ci.yml": PIPELINE, ".farm/rollout.yml": plan})
    build = client.post("/api/v1/builds", json={"repo": str(repo), "no_cache": True}).json()
    worker.run(job_id(build, "compile"), artifacts=[worker.artifact("compile", b"v1")])
    worker.run(job_id(build, "unit"))
    rollouts = client.get("/api/v1/rollouts", params={"project": "cd"}).json()
    assert [r["version"] for r in rollouts] == [f"main-{build['id']}"]
    assert rollouts[0]["state"] == "progressing"
    # A person plays the manual deploy job of the green build: the build finishes again.
    played = client.post(f"/api/v1/jobs/{job_id(build, 'deploy')}/play")
    assert played.status_code == 200, played.text
    worker.run(job_id(build, "deploy"))
    assert client.get(f"/api/v1/builds/{build['id']}").json()["status"] == "success"
    assert len(client.get("/api/v1/rollouts", params={"project": "cd"}).json()) == 1
