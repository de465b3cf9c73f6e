"""``/api/v1/worker``: claim, log/heartbeat, finish, live, as a worker drives a build."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.farmtest import make_repo
from tests.unit.api.conftest import (
    RecordingDispatcher,
    Submit,
    TestClient,
    WorkerWire,
    job_id,
)


def jobs_of(client: TestClient, build_id: int) -> dict[str, str]:
    build = client.get(f"/api/v1/builds/{build_id}").json()
    return {j["name"]: j["status"] for j in build["jobs"]}


def test_claim_hands_out_the_assignment_once(
    client: TestClient, submit: Submit, worker: WorkerWire
) -> None:
    build = submit(variables={"GREETING": "hi"})
    compile_id = job_id(build, "compile")
    resp = worker.claim(compile_id)
    assert resp.status_code == 200, resp.text
    work = resp.json()
    assert (work["job_id"], work["attempt"], work["build_id"]) == (compile_id, 1, build["id"])
    assert work["name"] == "compile" and work["script"] == ["make"]
    assert work["snapshot_digest"] == build["snapshot_digest"]
    assert work["variables"]["GREETING"] == "hi"
    assert work["variables"]["CI_COMMIT_SHA"] == build["commit"]
    job = client.get(f"/api/v1/jobs/{compile_id}").json()
    assert job["status"] == "running" and job["worker"] == worker.name
    assert client.get(f"/api/v1/builds/{build['id']}").json()["status"] == "running"
    # A duplicated message, a stale attempt, a job not yet ready: all refused.
    assert worker.claim(compile_id).status_code == 409
    assert worker.claim(compile_id, attempt=2).status_code == 409
    not_ready = worker.claim(job_id(build, "unit"))
    assert not_ready.status_code == 409 and not_ready.json()["error"] == "Conflict"


def test_finish_advances_the_dag(
    client: TestClient, submit: Submit, worker: WorkerWire, dispatcher: RecordingDispatcher
) -> None:
    build = submit()
    assert worker.run(job_id(build, "compile")) == {"status": "success", "attempt": 1}
    assert jobs_of(client, build["id"]) == {
        "compile": "success",
        "unit": "pending",
        "deploy": "created",
    }
    assert [d.name for d in dispatcher.of_build(build["id"])] == ["compile", "unit"]
    worker.run(job_id(build, "unit"))
    assert jobs_of(client, build["id"])["deploy"] == "manual"
    done = client.get(f"/api/v1/builds/{build['id']}").json()
    assert done["status"] == "success" and done["deliverable"]["digest"].startswith("sha256:")


def test_a_failed_job_fails_the_build_and_skips_the_rest(
    client: TestClient, submit: Submit, worker: WorkerWire
) -> None:
    build = submit()
    assert worker.run(job_id(build, "compile"), exit_code=2)["status"] == "failed"
    done = client.get(f"/api/v1/builds/{build['id']}").json()
    assert done["status"] == "failed" and done["deliverable"] is None
    jobs = {j["name"]: j for j in done["jobs"]}
    assert jobs["compile"]["exit_code"] == 2 and jobs["compile"]["reason"] == "script_failure"
    assert jobs["unit"]["status"] == "skipped"


def test_stale_and_duplicate_reports_change_nothing(
    client: TestClient, submit: Submit, worker: WorkerWire
) -> None:
    compile_id = job_id(submit(), "compile")
    worker.claim(compile_id)
    stale = worker.finish(compile_id, attempt=7, exit_code=1)
    assert stale.status_code == 200 and stale.json() == {"status": "running", "attempt": 1}
    assert worker.log(compile_id, 7, "ghost\n").json() == {"continue": False, "accepted": False}
    assert worker.finish(compile_id, exit_code=0).json()["status"] == "success"
    replay = worker.finish(compile_id, exit_code=1)  # the same report delivered again
    assert replay.json() == {"status": "success", "attempt": 1}
    assert client.get(f"/api/v1/jobs/{compile_id}/log").text == ""


def test_finish_with_an_artifact_that_was_not_uploaded_is_refused(
    client: TestClient, submit: Submit, worker: WorkerWire
) -> None:
    compile_id = job_id(submit(), "compile")
    worker.claim(compile_id)
    ghost = {"name": "out", "kind": "archive", "digest": "sha256:" + "0" * 64, "size": 3}
    resp = worker.finish(compile_id, artifacts=[ghost])
    assert resp.status_code == 400 and resp.json()["error"] == "UploadError"
    assert "was not uploaded" in resp.json()["detail"]
    # Nothing recorded: the attempt is still running and may report again.
    assert client.get(f"/api/v1/jobs/{compile_id}").json()["status"] == "running"
    real = worker.artifact("out", b"bytes", expire_in=3600)
    assert worker.finish(compile_id, artifacts=[real]).json()["status"] == "success"
    [art] = client.get(f"/api/v1/jobs/{compile_id}/artifacts").json()
    assert art["digest"] == real["digest"] and art["expires_at"] is not None


def test_malformed_reports_are_422_and_change_nothing(
    client: TestClient, submit: Submit, worker: WorkerWire
) -> None:
    compile_id = job_id(submit(), "compile")
    worker.claim(compile_id)
    no_digest = worker.finish(compile_id, artifacts=[{"name": "out", "size": 1}])
    assert no_digest.status_code == 422, no_digest.text
    assert no_digest.json()["error"] == "ValidationError"
    assert "digest" in no_digest.json()["detail"]
    assert worker.claim(compile_id, attempt=0).status_code == 422
    assert client.get(f"/api/v1/jobs/{compile_id}").json()["status"] == "running"


def test_another_protocol_is_refused_loudly(
    client: TestClient, submit: Submit, worker: WorkerWire
) -> None:
    compile_id = job_id(submit(), "compile")
    future = WorkerWire(worker.http, protocol=99)
    resp = future.claim(compile_id)
    assert resp.status_code == 426, resp.text
    assert resp.json()["error"] == "ProtocolMismatch" and "protocol 99" in resp.json()["detail"]
    assert client.get(f"/api/v1/jobs/{compile_id}").json()["status"] == "pending"
    # A body without the field is protocol 1, the wire before the field existed.
    legacy = worker.http.post(
        f"/api/v1/worker/jobs/{compile_id}/claim", json={"attempt": 1, "worker": "old"}
    )
    assert legacy.status_code == 200, legacy.text


def test_retry_dispatches_a_new_attempt(
    client: TestClient, tmp_path: Path, submit: Submit, worker: WorkerWire, dispatcher: Any
) -> None:
    flaky = make_repo(tmp_path / "flaky", {".farm-ci.yml": "t:\n  script: [x]\n  retry: 1\n"})
    t = job_id(submit(flaky), "t")
    assert worker.run(t, 1, exit_code=1) == {"status": "pending", "attempt": 2}
    assert [(d.job_id, d.attempt) for d in dispatcher.sent] == [(t, 1), (t, 2)]
    assert worker.claim(t, 1).status_code == 409  # the old attempt is gone
    assert worker.run(t, 2)["status"] == "success"


def test_coverage_is_recorded(client: TestClient, submit: Submit, worker: WorkerWire) -> None:
    compile_id = job_id(submit(), "compile")
    worker.claim(compile_id)
    worker.finish(compile_id, coverage=87.5)
    assert client.get(f"/api/v1/jobs/{compile_id}").json()["coverage"] == 87.5


def test_live_says_which_attempts_still_run(submit: Submit, worker: WorkerWire) -> None:
    build = submit()
    compile_id = job_id(build, "compile")
    worker.claim(compile_id)
    pairs = [(compile_id, 1), (compile_id, 2), (job_id(build, "unit"), 1), (999999, 1)]
    resp = worker.live(pairs)
    assert resp.status_code == 200 and resp.json() == {"live": [True, False, False, False]}


@pytest.mark.parametrize("settings_overrides", [{"log_max_bytes": 64}])
def test_log_is_capped_with_a_marker(
    client: TestClient, submit: Submit, worker: WorkerWire
) -> None:
    compile_id = job_id(submit(), "compile")
    worker.claim(compile_id)
    assert worker.log(compile_id, 1, "x" * 40).json()["accepted"] is True
    full = worker.log(compile_id, 1, "y" * 40).json()
    assert full == {"continue": True, "accepted": False}  # alive, but stop sending
    assert worker.log(compile_id, 1, "z" * 10).json()["accepted"] is False
    text = client.get(f"/api/v1/jobs/{compile_id}/log").text
    assert text.startswith("x" * 40 + "y" * 24) and "z" not in text
    assert "log truncated" in text
