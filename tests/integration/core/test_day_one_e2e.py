"""Issue 15 for real: a job that fails on attempt 1 is retried with `farm retry` and
passes; its JUnit report, both attempts' logs (no colours in a pipe), one artifact file
by path, and the job it skipped running after the retry."""

from __future__ import annotations

from pathlib import Path

from tests.farmtest import BUSYBOX, Farm, job_named, make_repo

PIPELINE = f"""
image: {BUSYBOX}
stages: [test, deploy]
flaky:
  stage: test
  script:
    - printf '\\033[32mattempt %s\\033[0m\\n' "$CI_JOB_ATTEMPT"
    - printf '<testsuite><testcase name="a" classname="m"/>' > report.xml
    - printf '<testcase name="b" classname="m"><failure message="nope"/></testcase>' >> report.xml
    - printf '</testsuite>' >> report.xml
    - test "$CI_JOB_ATTEMPT" != 1
  artifacts:
    when: always
    paths: [report.xml]
    reports:
      junit: [report.xml]
after:
  stage: deploy
  script: [echo deployed]
  environment: {{name: staging, url: "https://staging.example"}}
"""


def test_retry_a_failed_job_for_real(farm: Farm, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "day-one-retry", {".farm-ci.yml": PIPELINE})
    build = farm.wait(farm.submit(repo)["id"])
    assert build["status"] == "failed", build
    flaky, after = job_named(build, "flaky"), job_named(build, "after")
    assert (flaky["status"], after["status"]) == ("failed", "skipped")
    tests = flaky["tests"]
    assert (tests["tests"], tests["failures"]) == (2, 1)
    assert tests["failed"][0]["name"] == "b" and tests["failed"][0]["message"] == "nope"

    retried = farm.cli("retry", str(flaky["id"]))
    assert retried.returncode == 0, retried.stderr
    assert "attempt 2" in retried.stdout
    build = farm.wait(build["id"])
    assert build["status"] == "success", build
    flaky, after = job_named(build, "flaky"), job_named(build, "after")
    assert (flaky["attempt"], after["status"]) == (2, "success")
    assert after["environment"] == {
        "name": "staging",
        "url": "https://staging.example",
        "action": "start",
    }

    logs = farm.cli("logs", str(flaky["id"]))
    assert logs.returncode == 0, logs.stderr
    assert "\x1b" not in logs.stdout  # a pipe: colours stripped
    one, two = logs.stdout.index("--- attempt 1 ---"), logs.stdout.index("--- attempt 2 ---")
    assert one < logs.stdout.index("attempt 1\n") < two < logs.stdout.index("attempt 2\n")

    got = farm.cli("artifacts", "get", str(build["id"]), "flaky", "report.xml", "-o", "-")
    assert got.returncode == 0, got.stderr
    assert '<testcase name="a"' in got.stdout

    status = farm.cli("status", str(build["id"]))
    line = next(ln for ln in status.stdout.splitlines() if " flaky " in ln)
    assert "attempt 2" in line and "tests 2" in line
