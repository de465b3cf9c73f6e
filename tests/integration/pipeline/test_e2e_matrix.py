"""parallel:matrix, parallel:N, extends and rules through real workers and containers."""

from __future__ import annotations

from pathlib import Path

from tests.farmtest import BUSYBOX, Farm, commit_files, job_named, make_repo

EXPANSION = f"""
image: {BUSYBOX}
.base:
  variables:
    FROM_BASE: base-value
  before_script:
    - echo "before from base"
test:
  extends: .base
  parallel:
    matrix:
      - LANG: [a, b]
        OS: [x]
  script:
    - 'test "$CI_JOB_NAME" = "test: [$LANG, $OS]"'
    - test "$FROM_BASE" = base-value
    - echo "matrix $LANG $OS"
shard:
  parallel: 3
  script:
    - test "$CI_NODE_TOTAL" = 3
    - test "$CI_JOB_NAME" = "shard $CI_NODE_INDEX/3"
    - echo "node $CI_NODE_INDEX of $CI_NODE_TOTAL"
"""


def test_matrix_parallel_and_extends(farm: Farm, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "matrix", {".farm-ci.yml": EXPANSION})
    done = farm.wait(farm.submit(repo, ref="main")["id"], timeout=120)
    names = sorted(j["name"] for j in done["jobs"])
    assert names == ["shard 1/3", "shard 2/3", "shard 3/3", "test: [a, x]", "test: [b, x]"]
    assert done["status"] == "success", done["jobs"]
    log = farm.log(job_named(done, "test: [b, x]")["id"])
    assert "matrix b x" in log and "before from base" in log
    assert "node 2 of 3" in farm.log(job_named(done, "shard 2/3")["id"])


RULES = f"""
image: {BUSYBOX}
on-main:
  rules:
    - if: $CI_COMMIT_REF_NAME == "main"
  script: [echo main]
on-var:
  rules:
    - if: $DEPLOY == "yes"
  script: [test "$DEPLOY" = yes]
never-here:
  rules:
    - if: $CI_COMMIT_REF_NAME == "release"
  script: [exit 1]
src-changed:
  rules:
    - changes: [src/**/*]
  script: [echo src]
docs-changed:
  rules:
    - changes: [docs/*]
  script: [echo docs]
has-lock:
  rules:
    - exists: [lock.txt]
  script: [echo lock]
has-missing:
  rules:
    - exists: [missing.txt]
  script: [exit 1]
"""


def test_rules_pick_jobs_by_ref_variables_changes_and_exists(farm: Farm, tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "rules",
        {".farm-ci.yml": RULES, "lock.txt": "1", "src/a.txt": "a", "docs/x.md": "x"},
    )
    commit_files(repo, {"docs/x.md": "changed docs only"})
    build = farm.submit(repo, ref="main", variables={"DEPLOY": "yes"})
    names = sorted(j["name"] for j in build["jobs"])
    assert names == ["docs-changed", "has-lock", "on-main", "on-var"]
    done = farm.wait(build["id"], timeout=90)
    assert done["status"] == "success", done["jobs"]
    # Without the variable the variable-gated job is left out as well.
    other = farm.submit(repo, ref="main")
    assert "on-var" not in [j["name"] for j in other["jobs"]]
    farm.wait(other["id"], timeout=90)
