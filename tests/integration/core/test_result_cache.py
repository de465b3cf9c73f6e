"""Issue 11: a job whose inputs equal an earlier successful job's is not run again."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from tests.farmtest import BUSYBOX, Farm, commit_files, job_named, make_repo

PIPELINE = f"""
image: {BUSYBOX}
stages: [build, test]
build:
  stage: build
  script:
    - cat src.txt > out.txt
    - echo "mode=$MODE" >> out.txt
    - echo built-it
  artifacts:
    paths: [out.txt]
test:
  stage: test
  script:
    - cat out.txt
    - cat out.txt > seen.txt
  artifacts:
    paths: [seen.txt]
"""


def _cached(build: dict[str, Any]) -> dict[str, bool]:
    return {j["name"]: j["cached"] for j in build["jobs"]}


def test_an_unchanged_commit_reuses_results_and_each_input_reruns(
    farm: Farm, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "rc", {".farm-ci.yml": PIPELINE, "src.txt": "one\n"})
    first = farm.wait(farm.submit(repo, ref="main")["id"])
    assert first["status"] == "success", first
    assert _cached(first) == {"build": False, "test": False}
    timeline = job_named(first, "build")["timeline"]
    for mark in ("queued", "claimed", "inputs_ready", "container_started", "reported"):
        assert mark in timeline, timeline

    again = farm.wait(farm.submit(repo, ref="main")["id"])
    assert again["status"] == "success", again
    assert _cached(again) == {"build": True, "test": True}
    for name in ("build", "test"):
        old, new = job_named(first, name), job_named(again, name)
        assert [a["digest"] for a in new["artifacts"]] == [a["digest"] for a in old["artifacts"]]
        assert new["exit_code"] == 0
    log = farm.log(job_named(again, "build")["id"])
    assert "reused" in log and "built-it" in log
    with farm.http as h:
        for art in job_named(again, "test")["artifacts"]:  # verify by digest
            blob = h.get(f"/api/v1/artifacts/{art['digest']}")
            assert blob.status_code == 200
            assert "sha256:" + hashlib.sha256(blob.content).hexdigest() == art["digest"]
        manifest = h.get(f"/api/v1/builds/{again['id']}/deliverable").json()
    assert all(j["cached"] for j in manifest["jobs"])
    status = farm.cli("status", str(again["id"]), "--timings")
    assert "cached" in status.stdout, status.stdout + status.stderr

    # --no-cache: everything runs.
    fresh = farm.wait(farm.submit(repo, ref="main", no_cache=True)["id"])
    assert fresh["status"] == "success" and _cached(fresh) == {"build": False, "test": False}

    # A variable: both run (the build's variables reach every job).
    var = farm.wait(farm.submit(repo, ref="main", variables={"MODE": "x"})["id"])
    assert var["status"] == "success" and _cached(var) == {"build": False, "test": False}

    # A file (a new commit, a new snapshot): both run.
    commit_files(repo, {"src.txt": "two\n"})
    changed = farm.wait(farm.submit(repo, ref="main")["id"])
    assert changed["status"] == "success" and _cached(changed) == {"build": False, "test": False}
    assert "two" in farm.log(job_named(changed, "test")["id"])


def test_a_changed_upstream_artifact_reruns_the_job(farm: Farm, tmp_path: Path) -> None:
    # build opts out and writes a different artifact each run: test must run each time.
    pipeline = PIPELINE.replace(
        "    - echo built-it\n",
        # busybox date has no %N: the build id differs on every run, the time may not
        '    - echo built-it\n    - echo "$CI_PIPELINE_ID" >> out.txt\n',
    ).replace(
        "build:\n  stage: build\n",
        "build:\n  stage: build\n  variables:\n    FARM_CACHE_RESULT: 'false'\n",
    )
    repo = make_repo(tmp_path / "up", {".farm-ci.yml": pipeline, "src.txt": "one\n"})
    first = farm.wait(farm.submit(repo, ref="main")["id"])
    second = farm.wait(farm.submit(repo, ref="main")["id"])
    assert first["status"] == second["status"] == "success"
    assert _cached(second) == {"build": False, "test": False}
    a, b = (job_named(x, "build")["artifacts"][0]["digest"] for x in (first, second))
    assert a != b


def test_manual_jobs_are_never_cached(farm: Farm, tmp_path: Path) -> None:
    pipeline = f"""
image: {BUSYBOX}
gate:
  when: manual
  allow_failure: false
  script: [echo gate]
"""
    repo = make_repo(tmp_path / "man", {".farm-ci.yml": pipeline})
    for _ in range(2):
        build = farm.submit(repo, ref="main")
        job = farm.wait_job(build["id"], "gate", {"manual"})
        with farm.http as h:
            assert h.post(f"/api/v1/jobs/{job['id']}/play").status_code == 200
        done = farm.wait(build["id"])
        assert done["status"] == "success" and not job_named(done, "gate")["cached"]
