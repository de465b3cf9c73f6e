"""`farm worker --name` is the name jobs record; tagged workers keep to tagged jobs."""

from __future__ import annotations

from pathlib import Path

from tests.farmtest import BUSYBOX, Farm, job_named, make_repo, wait_for

TAGGED = f"""
image: {BUSYBOX}
named:
  tags: [named-only]
  script: [echo "on $CI_RUNNER_DESCRIPTION"]
"""


def test_a_worker_named_by_option_only_records_that_name_on_its_jobs(
    farm: Farm, tmp_path: Path
) -> None:
    env = {k: v for k, v in farm.env.items() if k != "FARM_WORKER_NAME"}
    assert "FARM_WORKER_NAME" not in env
    saved, farm.env = farm.env, env
    try:
        worker = farm.start("named-only", "worker", "--tags", "named-only", "--name", "w3@host")
    finally:
        farm.env = saved
    try:
        wait_for(lambda: "ready" in worker.log.read_text(errors="replace"), 60, "named worker")
        banner = worker.log.read_text(errors="replace")
        # A tagged worker keeps to tagged jobs unless told --run-untagged (as GitLab).
        assert ".> farm.tags.named-only " in banner
        assert ".> farm " not in banner
        repo = make_repo(tmp_path / "repo", {".farm-ci.yml": TAGGED})
        done = farm.wait(farm.submit(repo)["id"])
        assert done["status"] == "success", done
        job = job_named(done, "named")
        assert job["worker"] == "w3@host"
        assert "Running on w3@host" in farm.log(job["id"])
    finally:
        worker.stop()
