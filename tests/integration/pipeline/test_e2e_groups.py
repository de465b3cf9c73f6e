"""resource_group serialises jobs across builds; interruptible builds are auto-canceled."""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise
from pathlib import Path

from tests.farmtest import BUSYBOX, Farm, commit_files, job_named, make_repo


def _deploy(group: str) -> str:
    return f"""
image: {BUSYBOX}
deploy:
  resource_group: {group}
  script: [echo "deploying $CI_PIPELINE_ID", sleep 2]
"""


def test_resource_group_runs_one_job_at_a_time_across_builds(farm: Farm, tmp_path: Path) -> None:
    group = f"prod-{tmp_path.name}"
    repos = [make_repo(tmp_path / f"svc{i}", {".farm-ci.yml": _deploy(group)}) for i in range(3)]
    builds = [farm.submit(repo, ref="main") for repo in repos]
    done = [farm.wait(b["id"], timeout=90) for b in builds]
    spans = []
    for build in done:
        assert build["status"] == "success", build["jobs"]
        job = job_named(build, "deploy")
        spans.append(
            (datetime.fromisoformat(job["started_at"]), datetime.fromisoformat(job["finished_at"]))
        )
    spans.sort()
    for (_, end), (start, _) in pairwise(spans):
        assert start >= end, spans
    # FIFO: the group went to the builds in submission order.
    starts = [job_named(b, "deploy")["started_at"] for b in done]
    assert starts == sorted(starts)


LONG = f"""
image: {BUSYBOX}
long:
  interruptible: true
  script:
    - sleep "${{SLEEP:-30}}"
"""

GUARDED = f"""
image: {BUSYBOX}
safe:
  script:
    - sleep "${{SLEEP:-4}}"
quick:
  interruptible: true
  script:
    - sleep "${{SLEEP:-4}}"
"""


def test_newer_build_cancels_an_interruptible_older_one(farm: Farm, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "intr", {".farm-ci.yml": LONG})
    old = farm.submit(repo, ref="main")
    farm.wait_job(old["id"], "long", {"running"}, timeout=60)
    commit_files(repo, {"next.txt": "newer commit"})
    new = farm.submit(repo, ref="main", variables={"SLEEP": "0"})
    canceled = farm.wait(old["id"], timeout=30)
    assert canceled["status"] == "canceled"
    assert job_named(canceled, "long")["status"] == "canceled"
    assert "auto-canceled" in (canceled["error"] or "")
    assert farm.wait(new["id"], timeout=60)["status"] == "success"


def test_started_non_interruptible_job_protects_the_older_build(farm: Farm, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "guard", {".farm-ci.yml": GUARDED})
    old = farm.submit(repo, ref="main")
    farm.wait_job(old["id"], "safe", {"running"}, timeout=60)
    new = farm.submit(repo, ref="main", variables={"SLEEP": "0"})
    assert farm.wait(old["id"], timeout=60)["status"] == "success"
    assert farm.wait(new["id"], timeout=60)["status"] == "success"
