"""`farm up` as a user runs it: its own Redis, API, a worker and Flower; then `farm down`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.farmtest import BUSYBOX, admin_headers, farm_cli, free_port, make_repo, wait_for

_farm = farm_cli


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory, docker_client: object) -> Iterator[dict[str, str]]:
    data = tmp_path_factory.mktemp("up")
    api_port, flower_port, redis_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "FARM_DATA_DIR": str(data),
        "FARM_API_PORT": str(api_port),
        "FARM_FLOWER_PORT": str(flower_port),
        # Nothing listens there: `farm up` must start its own redis-server.
        "FARM_BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
    }
    env.pop("FARM_API_URL", None)
    started = _farm(env, "up", "--detach", "--workers", "1", "--concurrency", "2")
    assert started.returncode == 0, started.stderr
    assert f"127.0.0.1:{api_port}" in started.stderr
    env["FLOWER_URL"] = f"http://127.0.0.1:{flower_port}"

    def flower_sees_worker() -> bool:
        try:
            return bool(httpx.get(env["FLOWER_URL"] + "/api/workers?refresh=1", timeout=5).json())
        except (httpx.HTTPError, ValueError):
            return False

    # Flower only shows tasks whose events it received: let it connect first.
    wait_for(flower_sees_worker, 90, "Flower to see the worker")
    yield env
    down = _farm(env, "down")
    assert down.returncode == 0, down.stderr


def test_up_starts_redis_api_and_is_idempotent(up: dict[str, str]) -> None:
    redis_log = Path(up["FARM_DATA_DIR"]) / "logs" / "redis.log"
    assert redis_log.exists()
    again = _farm(up, "up", "--detach")
    assert again.returncode == 0 and "already running" in again.stderr


def test_submit_wait_succeeds_and_shows_progress(up: dict[str, str], tmp_path: Path) -> None:
    pipeline = f"image: {BUSYBOX}\nhello:\n  script: [echo hello-from-farm, sleep 2]\n"
    repo = make_repo(tmp_path / "ok", {".farm-ci.yml": pipeline})
    run = _farm(up, "submit", str(repo), "--wait", "--json")
    assert run.returncode == 0, run.stderr
    assert "hello: running" in run.stderr and "hello: success" in run.stderr
    assert "deliverable sha256:" in run.stderr
    import json

    build = json.loads(run.stdout)
    assert build["status"] == "success"
    job_id = str(build["jobs"][0]["id"])
    logs = _farm(up, "logs", job_id)
    assert logs.returncode == 0 and "hello-from-farm" in logs.stdout
    status = _farm(up, "status", str(build["id"]))
    assert status.returncode == 0 and "success" in status.stdout

    def flower_names() -> bool:
        try:
            tasks = httpx.get(up["FLOWER_URL"] + "/api/tasks", timeout=2).json()
        except (httpx.HTTPError, ValueError):
            return False
        return any(
            t.get("name") == "farm.run_job"
            and str(t.get("args", "")).startswith(f"build {build['id']} · hello #1")
            for t in tasks.values()
        )

    wait_for(flower_names, 60, "the task, described by build and job, in Flower")


def test_submit_wait_exits_1_on_a_failed_build(up: dict[str, str], tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "bad", {".farm-ci.yml": f"image: {BUSYBOX}\nno:\n  script: [exit 4]\n"}
    )
    run = _farm(up, "submit", str(repo), "--wait")
    assert run.returncode == 1
    assert "no: failed (exit 4)" in run.stderr


def test_cli_errors_are_one_line(up: dict[str, str], tmp_path: Path) -> None:
    missing = _farm(up, "status", "999999")
    assert missing.returncode != 0
    assert missing.stderr.strip().startswith("error:") and "\n" not in missing.stderr.strip()
    nowhere = _farm({**up, "FARM_API_URL": f"http://127.0.0.1:{free_port()}"}, "status", "1")
    assert nowhere.returncode != 0 and "cannot reach the farm API" in nowhere.stderr
    assert "Traceback" not in nowhere.stderr


def test_logs_follow_streams_until_the_job_ends(up: dict[str, str], tmp_path: Path) -> None:
    pipeline = f"image: {BUSYBOX}\ntalk:\n  script: [echo one, sleep 3, echo two]\n"
    repo = make_repo(tmp_path / "follow", {".farm-ci.yml": pipeline})
    submitted = _farm(up, "submit", str(repo))
    assert submitted.returncode == 0, submitted.stderr
    build_id = submitted.stdout.strip()
    api = f"http://127.0.0.1:{up['FARM_API_PORT']}"
    job_id = httpx.get(
        f"{api}/api/v1/builds/{build_id}", headers=admin_headers(up["FARM_DATA_DIR"])
    ).json()["jobs"][0]["id"]
    followed = _farm(up, "logs", "-f", str(job_id), timeout=120)
    assert followed.returncode == 0, followed.stderr
    assert "\none\n" in followed.stdout and "\ntwo\n" in followed.stdout
    assert "Job succeeded" in followed.stdout
