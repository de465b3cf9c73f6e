"""retry, manual + `farm play`, delayed jobs, allow_failure:exit_codes and workflow:rules."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from tests.farmtest import BUSYBOX, Farm, job_named, make_repo

PIPELINE = f"""
image: {BUSYBOX}
stages: [test, deploy]
flaky:
  retry: 1
  script:
    - echo "attempt $CI_JOB_ATTEMPT"
    - test "$CI_JOB_ATTEMPT" -ge 2
soft:
  allow_failure:
    exit_codes: [3]
  script: [exit 3]
later:
  when: delayed
  start_in: 2 seconds
  script: [echo delayed]
ship:
  stage: deploy
  when: manual
  script: [echo shipped]
"""


def test_retry_manual_delayed_and_allowed_exit_codes(farm: Farm, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "flow", {".farm-ci.yml": PIPELINE})
    build = farm.submit(repo, ref="main")
    ship = farm.wait_job(build["id"], "ship", {"manual"}, timeout=90)
    # A manual job is optional by default: the build settles without it.
    done = farm.wait(build["id"], timeout=90)
    assert done["status"] == "success", done["jobs"]
    flaky = job_named(done, "flaky")
    assert (flaky["status"], flaky["attempt"]) == ("success", 2)
    soft = job_named(done, "soft")
    assert (soft["status"], soft["exit_code"]) == ("failed", 3)
    later = job_named(done, "later")
    waited = datetime.fromisoformat(later["started_at"]) - datetime.fromisoformat(
        done["created_at"]
    )
    assert later["status"] == "success" and waited.total_seconds() >= 2
    assert job_named(done, "ship")["status"] == "manual"

    played = farm.cli("play", str(ship["id"]))
    assert played.returncode == 0, played.stderr
    assert farm.wait_job(build["id"], "ship", {"success", "failed"})["status"] == "success"
    assert "shipped" in farm.log(ship["id"])


def test_soft_failure_with_another_exit_code_fails_the_build(farm: Farm, tmp_path: Path) -> None:
    text = f"image: {BUSYBOX}\nhard:\n  allow_failure:\n    exit_codes: [3]\n  script: [exit 4]\n"
    repo = make_repo(tmp_path / "hard", {".farm-ci.yml": text})
    done = farm.wait(farm.submit(repo, ref="main")["id"], timeout=60)
    assert done["status"] == "failed"


def test_workflow_rules_refuse_a_build_with_a_clear_message(farm: Farm, tmp_path: Path) -> None:
    text = (
        f"image: {BUSYBOX}\nworkflow:\n  rules:\n"
        '    - if: $CI_COMMIT_REF_NAME == "release"\n'
        "job:\n  script: [echo hi]\n"
    )
    repo = make_repo(tmp_path / "wf", {".farm-ci.yml": text})
    with farm.http as h:
        resp = h.post("/api/v1/builds", json={"repo": str(repo), "ref": "main"})
    assert resp.status_code == 422, resp.text
    assert "workflow:rules" in resp.json()["detail"]
