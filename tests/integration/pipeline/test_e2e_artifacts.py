"""needs with artifacts, dotenv, untracked, artifacts:when, expire_in and coverage, end to end."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from tests.farmtest import BUSYBOX, Farm, job_named, make_repo

PIPELINE = f"""
image: {BUSYBOX}
stages: [build, test]
make:
  stage: build
  script: [mkdir -p out, echo made > out/a.txt]
  artifacts:
    paths: [out/]
    expire_in: 1 hour
env:
  stage: build
  script: [echo "VERSION=1.2.3" > build.env]
  artifacts:
    reports:
      dotenv: build.env
untracked:
  stage: build
  script: [echo gen > generated.txt, mkdir -p sub, echo y > sub/y.txt, echo more >> tracked.txt]
  artifacts:
    untracked: true
onfail:
  stage: build
  script: [echo report > fail.txt, exit 1]
  allow_failure: true
  artifacts:
    when: on_failure
    paths: [fail.txt]
cov:
  stage: build
  script: ['echo "Coverage: 50.0%"', 'echo "Coverage: 87.5%"', echo done]
  coverage: '/Coverage: \\d+\\.\\d+%/'
use:
  stage: test
  needs: [make, env]
  script: [test -f out/a.txt, test "$VERSION" = 1.2.3]
noart:
  stage: test
  needs:
    - job: make
      artifacts: false
  script: [test ! -e out/a.txt]
"""


def test_artifacts_dotenv_untracked_and_coverage(farm: Farm, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "arts", {".farm-ci.yml": PIPELINE, "tracked.txt": "t\n"})
    done = farm.wait(farm.submit(repo, ref="main")["id"], timeout=120)
    assert done["status"] == "success", done["jobs"]
    for name in ("use", "noart"):
        assert job_named(done, name)["status"] == "success"
    (made,) = job_named(done, "make")["artifacts"]
    expires = datetime.fromisoformat(made["expires_at"])
    created = datetime.fromisoformat(job_named(done, "make")["finished_at"])
    assert timedelta(minutes=55) < expires - created < timedelta(minutes=65)
    (untracked,) = job_named(done, "untracked")["artifacts"]
    # tracked.txt changed but is in the commit: not untracked.
    assert untracked["files"] == ["generated.txt", "sub/y.txt"]
    onfail = job_named(done, "onfail")
    assert onfail["status"] == "failed"
    assert [a["files"] for a in onfail["artifacts"]] == [["fail.txt"]]
    assert job_named(done, "cov")["coverage"] == 87.5
    assert job_named(done, "make")["coverage"] is None


LEVELS = f"""
image: {BUSYBOX}
.big: &big
  # A fixed mtime: the tar headers (and so the compressed sizes) are the same in each job.
  script: ['yes farm-artifact | head -c 3000000 > big.txt', 'touch -t 200001010000 big.txt']
  artifacts:
    paths: [big.txt]
stored:
  <<: *big
  variables: {{ARTIFACT_COMPRESSION_LEVEL: "0"}}
deflated:
  <<: *big
odd:
  <<: *big
  variables: {{ARTIFACT_COMPRESSION_LEVEL: turbo}}
"""


def test_artifact_compression_level_variable(farm: Farm, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "levels", {".farm-ci.yml": LEVELS})
    done = farm.wait(farm.submit(repo, ref="main")["id"], timeout=120)
    assert done["status"] == "success", done["jobs"]
    size = {name: job_named(done, name)["artifacts"][0]["size"] for name in ("stored", "deflated")}
    assert size["stored"] > 3_000_000 > 20 * size["deflated"]  # level 0 stores, 6 deflates
    odd = job_named(done, "odd")
    assert odd["artifacts"][0]["size"] == size["deflated"]  # unknown word: the default level
    assert "unknown compression level 'turbo'" in farm.log(odd["id"])
