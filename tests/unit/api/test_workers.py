"""Workers' heartbeats, ``GET /api/v1/workers``, stuck jobs and the Prometheus names."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from farm.coordinator.stuck import mark_stuck
from farm.domain.workers import stuck_reason
from tests.unit.api.conftest import Submit, WorkerWire, job_id


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"stuck_after": 0.0}


def _beat(
    client: TestClient, name: str, queues: list[str], running: list[int] | None = None
) -> None:
    body = {"name": name, "host": "h1", "queues": queues, "slots": 2, "running": running or []}
    resp = client.post("/api/v1/worker/heartbeat", json=body)
    assert resp.status_code == 204, resp.text


def test_heartbeats_list_workers(client: TestClient) -> None:
    _beat(client, "w1", ["farm", "farm.tags.gpu", "farm.status"], [7])
    _beat(client, "w1", ["farm", "farm.tags.gpu", "farm.status"], [7, 8])  # an update
    _beat(client, "w2", ["farm"])
    workers = client.get("/api/v1/workers").json()
    assert [w["name"] for w in workers] == ["w1", "w2"]
    w1 = workers[0]
    assert w1["host"] == "h1" and w1["slots"] == 2 and w1["running"] == [7, 8]
    assert w1["alive"] and w1["last_seen"]


def test_pending_job_without_worker_is_stuck_until_one_appears(
    app: FastAPI, client: TestClient, submit: Submit
) -> None:
    build = submit()
    store, settings = app.state.store, app.state.settings
    assert mark_stuck(store, settings) >= 1  # no worker at all
    doc = client.get(f"/api/v1/builds/{build['id']}").json()
    pending = [j for j in doc["jobs"] if j["status"] == "pending"]
    assert pending and all(j["stuck_reason"] == stuck_reason("farm") for j in pending)
    assert doc["stuck_reason"] == "stuck: no worker serves untagged jobs"
    assert all(j["stuck_reason"] is None for j in doc["jobs"] if j["status"] != "pending")
    _beat(client, "gpu-only", ["farm.tags.gpu"])  # serves another queue: still stuck
    assert mark_stuck(store, settings) == 0
    assert client.get(f"/api/v1/builds/{build['id']}").json()["stuck_reason"]
    _beat(client, "w1", ["farm"])
    mark_stuck(store, settings)
    doc = client.get(f"/api/v1/builds/{build['id']}").json()
    assert doc["stuck_reason"] is None and all(j["stuck_reason"] is None for j in doc["jobs"])


def test_stuck_reason_names_the_tags() -> None:
    assert stuck_reason("farm.tags.gpu") == "stuck: no worker serves tags [gpu]"
    assert stuck_reason("farm.tags.arm+gpu") == "stuck: no worker serves tags [arm, gpu]"


def test_metrics_keep_old_names_and_add_new(client: TestClient, submit: Submit) -> None:
    submit()
    _beat(client, "w1", ["farm"], [1])
    text = client.get("/metrics").text
    assert "farm_builds_total 1.0\n" in text
    assert 'farm_jobs{status="pending"} 1.0\n' in text
    assert 'farm_worker_slots{state="total"} 2.0' in text
    assert 'farm_worker_slots{state="busy"} 1.0' in text
    assert "farm_builds_running" in text and "farm_registry_artifact_bytes" in text
    assert "# TYPE farm_job_duration_seconds histogram" in text
    assert "# TYPE farm_job_queue_wait_seconds histogram" in text


def test_a_failed_build_observes_its_started_jobs(
    client: TestClient, submit: Submit, worker: WorkerWire
) -> None:
    build = submit()
    assert worker.run(job_id(build, "compile"), exit_code=2)["status"] == "failed"
    assert client.get(f"/api/v1/builds/{build['id']}").json()["status"] == "failed"
    text = client.get("/metrics").text
    assert 'farm_job_duration_seconds_count{status="failed"} 1.0' in text
    assert 'farm_job_queue_wait_seconds_count{queue="farm"} 1.0' in text
    assert 'farm_job_duration_seconds_count{status="skipped"}' not in text  # never started
