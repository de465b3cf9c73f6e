"""``/api/v1/jobs``: one job, its log with cursors, play, its artifacts; artifact download."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from tests.farmtest import make_repo
from tests.unit.api.conftest import (
    RecordingDispatcher,
    Submit,
    TestClient,
    WorkerWire,
    job_id,
)


def test_get_job_and_unknown_job(client: TestClient, submit: Submit) -> None:
    build = submit()
    compile_id = job_id(build, "compile")
    job = client.get(f"/api/v1/jobs/{compile_id}").json()
    assert job["id"] == compile_id and job["build_id"] == build["id"]
    assert (job["name"], job["stage"], job["status"]) == ("compile", "build", "pending")
    assert job["artifacts"] == [] and job["worker"] is None
    for path in ("", "/log", "/artifacts"):
        resp = client.get(f"/api/v1/jobs/987654{path}")
        assert resp.status_code == 404 and resp.json()["detail"] == "job 987654 does not exist"
    assert client.post("/api/v1/jobs/987654/play").status_code == 404


def test_log_is_read_with_cursors_while_the_job_runs(
    client: TestClient, submit: Submit, worker: WorkerWire
) -> None:
    compile_id = job_id(submit(), "compile")
    log_url = f"/api/v1/jobs/{compile_id}/log"
    empty = client.get(log_url)
    assert empty.status_code == 200 and empty.text == ""
    assert empty.headers["x-farm-log-cursor"] == "0"
    assert empty.headers["x-farm-job-status"] == "pending"
    assert empty.headers["content-type"].startswith("text/plain")

    assert worker.claim(compile_id).status_code == 200
    assert worker.log(compile_id, 1, "one\n").json() == {"continue": True, "accepted": True}
    worker.log(compile_id, 1, "two\n")
    first = client.get(log_url)
    assert first.text == "one\ntwo\n"
    assert first.headers["x-farm-job-status"] == "running"
    assert first.headers["x-farm-job-attempt"] == "1"
    cursor = first.headers["x-farm-log-cursor"]
    assert int(cursor) > 0

    nothing_new = client.get(log_url, params={"after": cursor})
    assert nothing_new.text == "" and nothing_new.headers["x-farm-log-cursor"] == cursor
    worker.log(compile_id, 1, "three\n")
    more = client.get(log_url, params={"after": cursor})
    assert more.text == "three\n" and int(more.headers["x-farm-log-cursor"]) > int(cursor)

    assert worker.finish(compile_id).status_code == 200
    done = client.get(log_url, params={"after": more.headers["x-farm-log-cursor"]})
    assert done.text == "" and done.headers["x-farm-job-status"] == "success"
    assert client.get(log_url).text == "one\ntwo\nthree\n"  # from the start again


def test_log_of_an_earlier_attempt(
    client: TestClient, submit: Submit, worker: WorkerWire, tmp_path: Path
) -> None:
    flaky = make_repo(tmp_path / "flaky", {".farm-ci.yml": "t:\n  script: [x]\n  retry: 1\n"})
    t = job_id(submit(flaky), "t")
    worker.run(t, 1, exit_code=1, log="first try\n")
    worker.run(t, 2, exit_code=0, log="second try\n")
    assert client.get(f"/api/v1/jobs/{t}/log").text == "second try\n"
    old = client.get(f"/api/v1/jobs/{t}/log", params={"attempt": 1})
    assert old.text == "first try\n" and old.headers["x-farm-job-attempt"] == "1"


def test_play_a_manual_job(
    client: TestClient,
    green_build: dict[str, Any],
    worker: WorkerWire,
    dispatcher: RecordingDispatcher,
) -> None:
    deploy = job_id(green_build, "deploy")
    assert client.get(f"/api/v1/jobs/{deploy}").json()["status"] == "manual"
    before = len(dispatcher.sent)
    resp = client.post(f"/api/v1/jobs/{deploy}/play")
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "pending" and resp.json()["name"] == "deploy"
    [sent] = dispatcher.sent[before:]
    assert (sent.job_id, sent.attempt) == (deploy, 1)
    assert client.get(f"/api/v1/builds/{green_build['id']}").json()["status"] == "running"
    again = client.post(f"/api/v1/jobs/{deploy}/play")
    assert again.status_code == 409 and "not waiting to be played" in again.json()["detail"]
    worker.run(deploy)
    assert client.get(f"/api/v1/builds/{green_build['id']}").json()["status"] == "success"


def test_playing_a_job_that_is_not_manual_is_409(client: TestClient, submit: Submit) -> None:
    resp = client.post(f"/api/v1/jobs/{job_id(submit(), 'compile')}/play")
    assert resp.status_code == 409 and resp.json()["error"] == "Conflict"


def test_artifact_listed_and_downloadable(client: TestClient, green_build: dict[str, Any]) -> None:
    compile_id = job_id(green_build, "compile")
    [art] = client.get(f"/api/v1/jobs/{compile_id}/artifacts").json()
    assert art["name"] == "compile" and art["kind"] == "archive" and art["files"] == ["out/app"]
    assert art["size"] == len(b"compiled bytes\n")
    assert art["url"] == f"/api/v1/artifacts/{art['digest']}"
    # The build document lists it on the job too.
    [listed] = next(j for j in green_build["jobs"] if j["name"] == "compile")["artifacts"]
    assert listed == art

    got = client.get(art["url"])
    assert got.status_code == 200 and got.content == b"compiled bytes\n"
    assert "sha256:" + hashlib.sha256(got.content).hexdigest() == art["digest"]
    assert got.headers["docker-content-digest"] == art["digest"]
    head = client.head(art["url"])
    assert head.status_code == 200 and head.headers["content-length"] == str(art["size"])
    part = client.get(art["url"], headers={"Range": "bytes=0-7"})
    assert part.status_code == 206 and part.content == b"compiled"


def test_only_artifacts_are_served_by_digest(
    client: TestClient, worker: WorkerWire, green_build: dict[str, Any]
) -> None:
    stray = worker.upload(b"a blob no job produced")
    assert client.get(f"/api/v1/blobs/{stray}").status_code == 200
    resp = client.get(f"/api/v1/artifacts/{stray}")
    assert resp.status_code == 404 and resp.json()["error"] == "NotFound"
