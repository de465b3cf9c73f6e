"""Losing a worker mid-job loses nothing: the attempt is retried and the orphan reaped."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.farmtest import BUSYBOX, Farm, job_named, make_repo, wait_for

PIPELINE = f"""
image: {BUSYBOX}
victim:
  tags: [victim]
  script:
    - echo "attempt $CI_JOB_ATTEMPT"
    - if [ "$CI_JOB_ATTEMPT" = 1 ]; then sleep 300; fi
    - echo finished
"""


def test_killed_worker_mid_job_is_retried_elsewhere_and_its_container_reaped(
    farm: Farm, tmp_path: Path, docker_client: object
) -> None:
    first = farm.start(
        "victim-1",
        "worker",
        "--tags",
        "victim",
        "--name",
        "victim1@test",
        extra_env={"FARM_WORKER_NAME": "victim1@test"},
    )
    try:
        repo = make_repo(tmp_path / "victim", {".farm-ci.yml": PIPELINE})
        build = farm.submit(repo)
        job = farm.wait_job(build["id"], "victim", {"running"}, timeout=60)
        assert job["worker"] == "victim1@test"

        def containers() -> list[object]:
            return list(
                docker_client.containers.list(  # type: ignore[attr-defined]
                    all=True, filters={"label": f"farm.job={job['id']}"}
                )
            )

        wait_for(lambda: bool(containers()), 20, "the first attempt's container")
        first.popen.send_signal(signal.SIGKILL)
        first.popen.wait(10)
        second = farm.start(
            "victim-2",
            "worker",
            "--tags",
            "victim",
            "--name",
            "victim2@test",
            extra_env={"FARM_WORKER_NAME": "victim2@test"},
        )
        try:
            done = farm.wait(build["id"], timeout=120)
            final = job_named(done, "victim")
            assert done["status"] == "success", done
            assert final["attempt"] == 2 and final["worker"] == "victim2@test"
            assert "finished" in farm.log(final["id"])
            wait_for(lambda: not containers(), 30, "the orphaned container to be reaped")
        finally:
            second.stop()
    finally:
        first.stop()


LOUD = f"""
image: {BUSYBOX}
loud:
  script:
    - i=0; while [ $i -lt 9000 ]; do echo "line $i of a chatty build log"; i=$((i+1)); done
"""


def test_log_is_capped_with_a_visible_marker(farm: Farm, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "loud", {".farm-ci.yml": LOUD})
    done = farm.wait(farm.submit(repo)["id"])
    assert done["status"] == "success"
    log = farm.log(done["jobs"][0]["id"])
    assert "log truncated" in log
    assert len(log.encode()) < 200_000 + 1000
