"""Issue 15's API: retry (job, build), the builds list's filters, one artifact file by
its path, and the test report of a job."""

from __future__ import annotations

import io
import tarfile
from typing import Any

from tests.unit.api.conftest import Submit, TestClient, WorkerWire, job_id


def _failed_build(client: TestClient, worker: WorkerWire, submit: Submit) -> dict[str, Any]:
    build = submit()
    worker.run(job_id(build, "compile"), exit_code=1, log="attempt one\n")
    doc: dict[str, Any] = client.get(f"/api/v1/builds/{build['id']}").json()
    assert doc["status"] == "failed"
    return doc


def test_retry_a_failed_job(client: TestClient, worker: WorkerWire, submit: Submit) -> None:
    doc = _failed_build(client, worker, submit)
    compile_id = job_id(doc, "compile")
    resp = client.post(f"/api/v1/jobs/{compile_id}/retry")
    assert resp.status_code == 200, resp.text
    assert (resp.json()["status"], resp.json()["attempt"]) == ("pending", 2)
    after = client.get(f"/api/v1/builds/{doc['id']}").json()
    assert after["status"] == "running" and after["finished_at"] is None
    assert {j["name"]: j["status"] for j in after["jobs"]}["unit"] == "created"
    worker.run(compile_id, 2, log="attempt two\n")
    # Both attempts' logs stay readable.
    assert client.get(f"/api/v1/jobs/{compile_id}/log?attempt=1").text == "attempt one\n"
    assert client.get(f"/api/v1/jobs/{compile_id}/log").text == "attempt two\n"
    # A job that did not fail is not retried.
    again = client.post(f"/api/v1/jobs/{compile_id}/retry")
    assert again.status_code == 409 and "only failed or canceled" in again.json()["detail"]


def test_retry_a_build(client: TestClient, worker: WorkerWire, submit: Submit) -> None:
    doc = _failed_build(client, worker, submit)
    resp = client.post(f"/api/v1/builds/{doc['id']}/retry")
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "running"
    assert client.post("/api/v1/builds/999/retry").status_code == 404


def test_builds_list_filters_by_status_with_offset(
    client: TestClient, worker: WorkerWire, submit: Submit
) -> None:
    failed = _failed_build(client, worker, submit)
    pending = submit()
    ids = [b["id"] for b in client.get("/api/v1/builds?status=failed").json()]
    assert ids == [failed["id"]]
    ids = [b["id"] for b in client.get("/api/v1/builds?status=pending").json()]
    assert ids == [pending["id"]]
    assert [b["id"] for b in client.get("/api/v1/builds?offset=1").json()] == [failed["id"]]
    assert client.get("/api/v1/builds?status=bogus").status_code == 422


def _tar(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_one_artifact_file_by_path(client: TestClient, worker: WorkerWire, submit: Submit) -> None:
    build = submit()
    data = _tar({"out/app.txt": b"hello\n", "out/page.html": b"<script>x</script>"})
    art = worker.artifact("compile", data, files=["out/app.txt", "out/page.html"])
    compile_id = job_id(build, "compile")
    worker.run(compile_id, artifacts=[art])
    got = client.get(f"/api/v1/jobs/{compile_id}/artifacts/out/app.txt")
    assert got.status_code == 200 and got.content == b"hello\n"
    assert got.headers["content-type"].startswith("text/plain")
    html = client.get(f"/api/v1/jobs/{compile_id}/artifacts/out/page.html")
    # HTML is shown as text (nosniff): an artifact's page never runs with the API's origin.
    assert html.headers["content-type"].startswith("text/plain")
    assert html.headers["x-content-type-options"] == "nosniff"
    missing = client.get(f"/api/v1/jobs/{compile_id}/artifacts/out/nope")
    assert missing.status_code == 404 and "no file 'out/nope'" in missing.json()["detail"]
    sneaky = client.get(f"/api/v1/jobs/{compile_id}/artifacts/out/%2e%2e/%2e%2e/etc/passwd")
    assert sneaky.status_code in (404, 422), sneaky.text  # never outside the archive
    dots = client.get(f"/api/v1/jobs/{compile_id}/artifacts/out/%2e%2e/app.txt")
    assert dots.status_code == 422 and "'..'" in dots.json()["detail"]
    none = client.get(f"/api/v1/jobs/{job_id(build, 'unit')}/artifacts/x")
    assert none.status_code == 404


def test_test_report_and_environment_in_the_job_document(
    client: TestClient, worker: WorkerWire, submit: Submit
) -> None:
    build = submit()
    compile_id = job_id(build, "compile")
    assert worker.claim(compile_id).status_code == 200
    report = {
        "tests": 3,
        "failures": 1,
        "errors": 0,
        "skipped": 1,
        "time": 0.5,
        "failed": [{"name": "test_x", "classname": "t.m", "message": "boom"}],
    }
    body = {
        "protocol": worker.protocol,
        "attempt": 1,
        "job_token": worker.job_tokens[compile_id],
        "exit_code": 1,
        "tests": report,
    }
    assert client.post(f"/api/v1/worker/jobs/{compile_id}/finish", json=body).status_code == 200
    job = client.get(f"/api/v1/jobs/{compile_id}").json()
    assert job["tests"] == report and job["environment"] is None
    doc = client.get(f"/api/v1/builds/{build['id']}").json()
    assert next(j for j in doc["jobs"] if j["id"] == compile_id)["tests"] == report


def test_docs_page_needs_no_network(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert "cdn." not in page.text and "/docs-assets/swagger-ui-bundle.js" in page.text
    js = client.get("/docs-assets/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 100_000
    assert client.get("/docs-assets/swagger-ui.css").status_code == 200
