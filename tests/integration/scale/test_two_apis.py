"""Two API/coordinator processes on one PostgreSQL database and one Redis (issue 10).

Builds are submitted to both; one worker reports to each API. Both watchdogs run every
second with an aggressive outbox (re-send after 2 s when a queue is empty), so their
passes overlap on the same jobs. Every job must run exactly once: success, attempt 1,
and one "claimed" log line per attempt.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import _healthy, farm_env
from tests.farmtest import BUSYBOX, Farm, free_port, make_repo, wait_for

PIPELINE = f"""
stages: [one, two]
default:
  image: {BUSYBOX}
a:
  stage: one
  parallel: 3
  script: [echo a]
b:
  stage: two
  parallel: 3
  script: [echo b]
"""
BUILDS_PER_API = 4


@pytest.fixture
def two_apis(
    tmp_path: Path, redis_url: str, postgres_url: str, docker_client: object
) -> Iterator[tuple[Farm, Farm]]:
    data_dir = tmp_path / "farm"
    data_dir.mkdir()
    farms: list[Farm] = []
    for i in (1, 2):
        port = free_port()
        env = farm_env(data_dir, redis_url, port)
        env.update(
            FARM_DATABASE_URL=postgres_url,
            FARM_REQUEUE_AFTER="2",
            FARM_WATCHDOG_INTERVAL="1",
        )
        f = Farm(url=f"http://127.0.0.1:{port}", env=env, data_dir=data_dir)
        api = f.start(f"api-{i}", "api")
        wait_for(lambda f=f, api=api: _healthy(f.url) or api.popen.poll() is not None, 60, "API")
        assert api.popen.poll() is None, api.log.read_text()
        farms.append(f)
    for i, f in enumerate(farms, 1):
        name = f"two-apis-w{i}@test"
        f.start(f"worker-{i}", "worker", "--concurrency", "2", "--name", name)
    yield farms[0], farms[1]
    for f in farms:
        for proc in reversed(f.procs):
            proc.stop()


def test_two_coordinators_run_every_job_once(two_apis: tuple[Farm, Farm], tmp_path: Path) -> None:
    one, two = two_apis
    repo = make_repo(tmp_path / "app", {".farm-ci.yml": PIPELINE})
    ids = []
    for _ in range(BUILDS_PER_API):
        ids.append(one.submit(repo, ref="main")["id"])
        ids.append(two.submit(repo, ref="main")["id"])
    assert len(set(ids)) == len(ids)  # one id sequence
    for build_id in ids:
        done = one.wait(build_id, timeout=240)
        assert done["status"] == "success", done
        assert len(done["jobs"]) == 6
        for job in done["jobs"]:
            assert job["attempt"] == 1, job
            assert job["status"] == "success", job
    # The other API serves the same documents.
    assert two.build(ids[0])["status"] == "success"
    for f in (one, two):
        log = (f.data_dir / f"{f.procs[0].name}.log").read_text(errors="replace")
        assert "lost its worker" not in log, log[-3000:]
