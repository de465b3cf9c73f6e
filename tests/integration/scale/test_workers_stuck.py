"""Issue 10 on a real farm: workers' heartbeats, `farm workers`, stuck jobs that start
as soon as a worker serving their tags appears."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.farmtest import BUSYBOX, Farm, job_named, make_repo, wait_for


def test_workers_are_listed_with_their_slots(farm: Farm) -> None:
    def listed() -> bool:
        with farm.http as h:
            names = {w["name"] for w in h.get("/api/v1/workers").json()}
        return sum(1 for n in names if n.startswith(("w1-", "w2-"))) == 2

    wait_for(listed, 30, "both workers' heartbeats")
    with farm.http as h:
        workers = [w for w in h.get("/api/v1/workers").json() if w["name"].startswith("w")]
    assert all(w["slots"] == 2 and "farm" in w["queues"] and w["alive"] for w in workers)
    out = farm.cli("workers", check=True).stdout
    assert "slots" in out and any(w["name"] in out for w in workers)


def test_job_no_worker_serves_is_stuck_then_runs_when_one_appears(
    farm: Farm, tmp_path: Path
) -> None:
    tag = f"gpu{uuid.uuid4().hex[:6]}"
    pipeline = f"""
train:
  image: {BUSYBOX}
  tags: [{tag}]
  script: [echo trained]
"""
    repo = make_repo(tmp_path / "gpu", {".farm-ci.yml": pipeline})
    build = farm.submit(repo, ref="main")
    reason = f"stuck: no worker serves tags [{tag}]"
    wait_for(lambda: farm.build(build["id"]).get("stuck_reason") == reason, 60, "stuck mark")
    doc = farm.build(build["id"])
    assert job_named(doc, "train")["status"] == "pending"
    assert job_named(doc, "train")["stuck_reason"] == reason
    name = f"{tag}@test"
    proc = farm.start(f"worker-{tag}", "worker", "--tags", tag, "--name", name)
    try:
        done = farm.wait(build["id"], timeout=120)
        assert done["status"] == "success", done
        assert job_named(done, "train")["worker"] == name
        assert done["stuck_reason"] is None and job_named(done, "train")["stuck_reason"] is None
    finally:
        proc.stop()
