"""Flower sees a failed job as a FAILURE task under the stable name farm.run_job (so its
/metrics series stay few); a canceled build's messages leave the queue."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import redis

from farm.worker.app import _job_of
from tests.farmtest import BUSYBOX, Farm, free_port, job_named, make_repo, wait_for

TWO = f"""
image: {BUSYBOX}
good:
  script: [echo fine]
bad:
  script: [exit 3]
"""


def _get(url: str) -> Any:
    try:
        resp = httpx.get(url, timeout=3)
    except httpx.HTTPError:
        return None
    return resp.json() if resp.status_code == 200 else None


def test_flower_shows_a_failed_job_as_failure_under_the_stable_task_name(
    farm: Farm, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    flower = farm.start(
        "flower", "flower", "--port", str(port), extra_env={"FLOWER_UNAUTHENTICATED_API": "true"}
    )
    try:
        wait_for(lambda: bool(_get(url + "/api/workers?refresh=1")), 90, "Flower to see workers")
        repo = make_repo(tmp_path / "two", {".farm-ci.yml": TWO})
        done = farm.wait(farm.submit(repo)["id"])
        assert done["status"] == "failed", done
        build_id, bad = done["id"], job_named(done, "bad")
        assert bad["attempt"] == 1

        def ours() -> dict[str, dict[str, Any]]:
            tasks = _get(url + "/api/tasks") or {}
            return {
                t["args"]: t
                for t in tasks.values()
                if f"build {build_id} · " in str(t.get("args"))
                and t.get("state") in ("SUCCESS", "FAILURE")
            }

        wait_for(lambda: len(ours()) == 2, 60, "both tasks finished in Flower")
        tasks = ours()
        states = {args.split(" · ")[1].split(" #")[0]: t["state"] for args, t in tasks.items()}
        assert states == {"good": "SUCCESS", "bad": "FAILURE"}
        assert {t["name"] for t in tasks.values()} == {"farm.run_job"}
        metrics = httpx.get(url + "/metrics", timeout=5).text
        assert 'task="farm.run_job"' in metrics
        assert f"build {build_id}" not in metrics
        # Acked, not redelivered: nothing of it waits in the broker, no second attempt.
        broker = redis.Redis.from_url(farm.env["FARM_BROKER_URL"])
        time.sleep(2)
        assert broker.hlen("unacked") == 0
        assert job_named(farm.build(build_id), "bad")["attempt"] == 1
    finally:
        flower.stop()


NOBODY = f"""
image: {BUSYBOX}
stranded:
  tags: [nobody-serves-this]
  script: [echo never]
"""


def test_cancel_removes_the_queued_messages_of_jobs_no_worker_serves(
    farm: Farm, tmp_path: Path
) -> None:
    broker = redis.Redis.from_url(farm.env["FARM_BROKER_URL"])
    queue = "farm.tags.nobody-serves-this"
    repo = make_repo(tmp_path / "nobody", {".farm-ci.yml": NOBODY})
    build = farm.submit(repo)
    wait_for(lambda: broker.llen(queue) == 1, 30, "the job's message in its queue")
    canceled = farm.cli("cancel", str(build["id"]))
    assert canceled.returncode == 0, canceled.stderr
    assert farm.wait(build["id"])["status"] == "canceled"
    assert broker.llen(queue) == 0


def test_a_cancel_takes_only_its_own_messages_out_of_a_shared_queue(
    farm: Farm, tmp_path: Path
) -> None:
    """Withdrawing is one atomic pass over the queue (a script, not one LREM per message):
    the other builds' messages stay, in their order."""
    broker = redis.Redis.from_url(farm.env["FARM_BROKER_URL"])
    queue = "farm.tags.nobody-serves-this"
    wide = NOBODY + "".join(
        f"stranded-{i}:\n  tags: [nobody-serves-this]\n  script: [echo never]\n" for i in range(30)
    )
    builds = []
    for name in ("first", "middle", "last"):
        builds.append(farm.submit(make_repo(tmp_path / name, {".farm-ci.yml": wide})))
        wait_for(lambda n=len(builds): broker.llen(queue) == 31 * n, 30, "the messages")
    before = [_job_of(raw) for raw in broker.lrange(queue, 0, -1)]
    middle = {j["id"] for j in builds[1]["jobs"]}
    assert farm.cli("cancel", str(builds[1]["id"])).returncode == 0
    after = [_job_of(raw) for raw in broker.lrange(queue, 0, -1)]
    assert after == [j for j in before if j not in middle] and len(after) == 62
    for build in (builds[0], builds[2]):
        assert farm.cli("cancel", str(build["id"])).returncode == 0
    assert broker.llen(queue) == 0
