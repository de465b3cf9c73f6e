"""`farm submit`, `status`, `logs`, `cancel`, `play` against the real API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.unit.cli.conftest import Farm, LiveApi


def test_submit_prints_the_build_id(farm: Farm, project: Path, live_api: LiveApi) -> None:
    result = farm("submit", str(project), "--var", "GREETING=hi")
    assert result.exit_code == 0, result.stderr
    build_id = int(result.stdout.strip())
    build = live_api.http.get(f"/api/v1/builds/{build_id}").json()
    assert result.stderr.startswith(
        f"build {build_id} created: {project.name} @ main ({build['commit'][:8]}), 3 jobs"
    )
    claimed = live_api.worker.claim(build["jobs"][0]["id"]).json()
    assert claimed["variables"]["GREETING"] == "hi"


def test_submit_json_and_status_json(farm: Farm, project: Path, live_api: LiveApi) -> None:
    submitted = farm("submit", str(project), "--ref", "main", "--json")
    assert submitted.exit_code == 0, submitted.stderr
    doc = json.loads(submitted.stdout)
    assert doc["status"] == "pending" and doc["project"] == project.name
    assert [j["name"] for j in doc["jobs"]] == ["compile", "unit", "deploy"]

    status = farm("status", str(doc["id"]), "--json")
    assert status.exit_code == 0, status.stderr
    assert json.loads(status.stdout) == live_api.http.get(f"/api/v1/builds/{doc['id']}").json()


def test_status_text(farm: Farm, green: dict[str, Any], live_api: LiveApi) -> None:
    result = farm("status", str(green["id"]))
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"build {green['id']} · {green['project']} @ main ({green['commit'][:8]}): success"
    )
    statuses = {line.split()[2]: line.split()[3] for line in lines[1:]}
    assert statuses == {"compile": "success", "unit": "success", "deploy": "manual"}
    deliverable = green["deliverable"]
    assert f"deliverable {deliverable['digest']}: {live_api.url}{deliverable['url']}" in (
        result.stderr
    )


def test_submit_wait_exits_0_on_success(farm: Farm, project: Path, live_api: LiveApi) -> None:
    worker = live_api.in_background(project)
    result = farm("submit", str(project), "--wait", "--json")
    worker.join(10)
    assert result.exit_code == 0, result.stderr
    build = json.loads(result.stdout)
    assert build["status"] == "success"
    assert f"build {build['id']} · unit: success" in result.stderr
    assert f"build {build['id']}: success" in result.stderr
    assert f"deliverable {build['deliverable']['digest']}" in result.stderr


def test_submit_wait_exits_1_on_failure(farm: Farm, project: Path, live_api: LiveApi) -> None:
    worker = live_api.in_background(project, {"compile": 3})
    result = farm("submit", str(project), "--wait")
    worker.join(10)
    assert result.exit_code == 1, result.stderr
    assert "compile: failed (exit 3) [script_failure]" in result.stderr
    assert result.stderr.rstrip().endswith(": failed")


def test_logs_cancel_and_play(farm: Farm, project: Path, live_api: LiveApi) -> None:
    build = live_api.submit(project)
    compile_id = build["jobs"][0]["id"]
    worker = live_api.worker
    worker.claim(compile_id)
    worker.log(compile_id, 1, "line one\n")
    worker.log(compile_id, 1, "line two\n")
    logs = farm("logs", str(compile_id))
    assert logs.exit_code == 0 and logs.stdout == "line one\nline two\n"
    worker.finish(compile_id)
    followed = farm("logs", "-f", str(compile_id))  # the job ended: reads all, returns
    assert followed.exit_code == 0 and followed.stdout == "line one\nline two\n"

    done = worker.run_build(build["id"])
    deploy_id = next(j["id"] for j in done["jobs"] if j["name"] == "deploy")
    played = farm("play", str(deploy_id))
    assert played.exit_code == 0 and played.stdout.strip() == f"job {deploy_id} (deploy): pending"

    other = live_api.submit(project)
    canceled = farm("cancel", str(other["id"]))
    assert canceled.exit_code == 0 and canceled.stdout.strip() == f"build {other['id']}: canceled"
