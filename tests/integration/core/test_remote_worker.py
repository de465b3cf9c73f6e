"""A worker that shares no filesystem with the API: inputs and outputs travel over HTTP."""

from __future__ import annotations

import time
from pathlib import Path

from tests.farmtest import BUSYBOX, Farm, job_named, make_repo, wait_for

PIPELINE = f"""
image: {BUSYBOX}
default:
  tags: [remote]
make:
  stage: build
  script: [mkdir out, cat src.txt > out/made.txt]
  artifacts: {{paths: [out/]}}
use:
  stage: test
  script: [grep from-the-commit out/made.txt]
"""


def test_worker_with_its_own_data_dir_runs_jobs_over_http(farm: Farm, tmp_path: Path) -> None:
    elsewhere = tmp_path / "other-host"
    # Another host has no token file of ours: it gets its own worker token, made with the
    # operator's break-glass command on the coordinator's host.
    made = farm.cli("token", "create", "--scope", "worker", "--name", "other-host", check=True)
    remote = farm.start(
        "remote",
        "worker",
        "--tags",
        "remote",
        "--name",
        "remote@other-host",
        extra_env={
            "FARM_WORKER_NAME": "remote@other-host",
            "FARM_TOKEN": made.stdout.strip(),
            "FARM_DATA_DIR": str(elsewhere),
            "FARM_DATABASE_URL": "sqlite:////nonexistent/never-used.db",
        },
    )
    try:
        wait_for(lambda: "ready" in remote.log.read_text(errors="replace"), 60, "remote worker")
        repo = make_repo(
            tmp_path / "repo", {".farm-ci.yml": PIPELINE, "src.txt": "from-the-commit\n"}
        )
        done = farm.wait(farm.submit(repo)["id"])
        assert done["status"] == "success", done
        assert {j["worker"] for j in done["jobs"]} == {"remote@other-host"}
        assert job_named(done, "make")["artifacts"]
        # Nothing of the API's registry or database appeared on the "other host".
        assert not (elsewhere / "registry").exists() and not (elsewhere / "farm.db").exists()
    finally:
        remote.stop()


BROKEN = f"""
image: {BUSYBOX}
job:
  tags: [broken]
  script: [echo never]
"""


def test_a_worker_fault_fails_the_attempt_at_once_with_its_reason(
    farm: Farm, tmp_path: Path
) -> None:
    not_a_dir = tmp_path / "work-is-a-file"
    not_a_dir.write_text("a worker cannot lay out jobs under a file\n")
    broken = farm.start(
        "broken",
        "worker",
        "--tags",
        "broken",
        "--name",
        "broken@host",
        extra_env={"FARM_WORKER_NAME": "broken@host", "FARM_WORK_DIR": str(not_a_dir)},
    )
    try:
        wait_for(lambda: "ready" in broken.log.read_text(errors="replace"), 60, "broken worker")
        repo = make_repo(tmp_path / "repo", {".farm-ci.yml": BROKEN})
        started = time.monotonic()
        done = farm.wait(farm.submit(repo)["id"])
        # Reported by the worker itself, not found out by the watchdog after the lease.
        assert time.monotonic() - started < farm_lease_seconds(farm)
        job = job_named(done, "job")
        assert (done["status"], job["reason"], job["attempt"]) == ("failed", "worker_error", 1)
        assert "farm worker error: NotADirectoryError" in farm.log(job["id"])
    finally:
        broken.stop()


def farm_lease_seconds(farm: Farm) -> float:
    return float(farm.env.get("FARM_JOB_LEASE_SECONDS", "30"))
