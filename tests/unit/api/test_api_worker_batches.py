"""``/api/v1/worker/claims`` and ``/reports``: several attempts per request, one result
each, as the per-job routes would have answered them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.farmtest import make_repo
from tests.unit.api.conftest import (
    PROTOCOL,
    RecordingDispatcher,
    Submit,
    TestClient,
    WorkerWire,
    job_id,
)

# Two independent jobs and one that needs both: a batch of both reports advances once.
FAN_IN = """\
left:
  script: [make left]
right:
  script: [make right]
join:
  needs: [left, right]
  script: [make join]
"""


def claims(client: TestClient, items: list[tuple[int, int]], worker: str = "w@test") -> Any:
    body = {
        "protocol": PROTOCOL,
        "claims": [{"job_id": j, "attempt": a, "worker": worker} for j, a in items],
    }
    resp = client.post("/api/v1/worker/claims", json=body)
    assert resp.status_code == 200, resp.text
    return resp.json()["results"]


def report(job: int, token: str, exit_code: int = 0, attempt: int = 1) -> dict[str, Any]:
    return {
        "job_id": job,
        "report": {
            "protocol": PROTOCOL,
            "attempt": attempt,
            "job_token": token,
            "exit_code": exit_code,
            "log": {"data": f"job {job} says bye\n", "offset": 0},
        },
    }


def reports(client: TestClient, items: list[dict[str, Any]]) -> Any:
    resp = client.post("/api/v1/worker/reports", json={"protocol": PROTOCOL, "reports": items})
    assert resp.status_code == 200, resp.text
    return resp.json()["results"]


def test_a_batch_of_claims_answers_each_claim_as_its_own_request_would(
    client: TestClient, submit: Submit
) -> None:
    build = submit()
    compile_id, unit_id = job_id(build, "compile"), job_id(build, "unit")
    # Taken, taken again in the same batch, not ready, no such job, a stale attempt.
    got = claims(
        client, [(compile_id, 1), (compile_id, 1), (unit_id, 1), (99999, 1), (compile_id, 2)]
    )
    assert got[0]["failure"] is None
    work = got[0]["assignment"]
    assert (work["job_id"], work["name"], work["build_id"]) == (compile_id, "compile", build["id"])
    assert work["job_token"].startswith("farm_")
    assert [r["failure"]["status"] for r in got[1:]] == [409, 409, 404, 409]
    assert [r["failure"]["error"] for r in got[1:]] == [
        "Conflict",
        "Conflict",
        "NotFound",
        "Conflict",
    ]
    assert all(r["assignment"] is None for r in got[1:])
    job = client.get(f"/api/v1/jobs/{compile_id}").json()
    assert job["status"] == "running" and job["worker"] == "w@test"


def test_a_batch_of_reports_records_each_and_advances_the_build_once(
    client: TestClient, submit: Submit, tmp_path: Path, dispatcher: RecordingDispatcher
) -> None:
    build = submit(make_repo(tmp_path / "fan", {".farm-ci.yml": FAN_IN}))
    left, right, join = (job_id(build, n) for n in ("left", "right", "join"))
    got = claims(client, [(left, 1), (right, 1)])
    tokens = [r["assignment"]["job_token"] for r in got]
    done = reports(client, [report(left, tokens[0]), report(right, tokens[1], exit_code=0)])
    assert done == [
        {"reply": {"status": "success", "attempt": 1}, "failure": None},
        {"reply": {"status": "success", "attempt": 1}, "failure": None},
    ]
    # The join was made ready and sent once, by the one advance after the batch.
    assert [d.name for d in dispatcher.of_build(build["id"])].count("join") == 1
    assert client.get(f"/api/v1/jobs/{join}").json()["status"] == "pending"
    assert client.get(f"/api/v1/jobs/{left}/log").text == f"job {left} says bye\n"
    [joined] = reports(
        client, [report(join, claims(client, [(join, 1)])[0]["assignment"]["job_token"])]
    )
    assert joined["reply"]["status"] == "success"
    # Timelines are written in bulk, at once when a build ends: the batch's advance
    # marked both of its reports.
    for job in (left, right):
        assert "next_dispatched" in client.get(f"/api/v1/jobs/{job}").json()["timeline"]


def test_one_refused_report_does_not_fail_its_batch(
    client: TestClient, submit: Submit, tmp_path: Path
) -> None:
    build = submit(make_repo(tmp_path / "fan", {".farm-ci.yml": FAN_IN}))
    left, right = job_id(build, "left"), job_id(build, "right")
    got = claims(client, [(left, 1), (right, 1)])
    token = got[0]["assignment"]["job_token"]
    ghost = {"name": "out", "kind": "archive", "digest": "sha256:" + "0" * 64, "size": 3}
    forged = report(right, "farm_job_forged")  # not the token the claim answered
    missing = report(left, token)
    missing["report"]["artifacts"] = [ghost]  # never uploaded
    stale = report(left, token, attempt=5)
    done = reports(client, [forged, missing, stale, report(left, token, exit_code=3)])
    assert [r["failure"] and r["failure"]["status"] for r in done] == [403, 400, None, None]
    assert done[1]["failure"]["error"] == "UploadError"
    assert done[2]["reply"] == {"status": "running", "attempt": 1}  # stale: changes nothing
    assert done[3]["reply"] == {"status": "failed", "attempt": 1}
    assert client.get(f"/api/v1/jobs/{right}").json()["status"] == "running"
    # The build waits for the job still running before it ends.
    assert client.get(f"/api/v1/builds/{build['id']}").json()["status"] == "running"


def test_a_batch_in_another_protocol_is_refused_whole(
    client: TestClient, submit: Submit, worker: WorkerWire
) -> None:
    compile_id = job_id(submit(), "compile")
    body = {
        "protocol": PROTOCOL + 1,
        "claims": [{"job_id": compile_id, "attempt": 1, "worker": "w"}],
    }
    resp = client.post("/api/v1/worker/claims", json=body)
    assert resp.status_code == 426 and resp.json()["error"] == "ProtocolMismatch"
    assert client.get(f"/api/v1/jobs/{compile_id}").json()["status"] == "pending"
    # An item in another protocol is refused alone.
    worker.claim(compile_id)
    item = report(compile_id, worker.job_tokens[compile_id])
    item["report"]["protocol"] = PROTOCOL + 1
    [one] = reports(client, [item])
    assert one["failure"]["status"] == 426
    assert client.get(f"/api/v1/jobs/{compile_id}").json()["status"] == "running"


def test_an_empty_or_oversized_batch_is_422(client: TestClient) -> None:
    empty = client.post("/api/v1/worker/claims", json={"protocol": PROTOCOL, "claims": []})
    assert empty.status_code == 422
    many = [{"job_id": 1, "attempt": 1, "worker": "w"}] * 65
    over = client.post("/api/v1/worker/claims", json={"protocol": PROTOCOL, "claims": many})
    assert over.status_code == 422
