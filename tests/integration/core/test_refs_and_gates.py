"""Tags are tags (CI_COMMIT_TAG, rules at submit), and a build blocked at a manual gate
is delivered: deliverable, release, `submit --wait` exits 0; playing the gate finishes it."""

from __future__ import annotations

import json
from pathlib import Path

from tests.farmtest import BUSYBOX, Farm, git, job_named, make_repo

REFS = f"""
image: {BUSYBOX}
workflow:
  rules:
    - if: $CI_COMMIT_TAG
    - if: $CI_COMMIT_BRANCH
show:
  script:
    - echo "tag=[$CI_COMMIT_TAG] branch=[$CI_COMMIT_BRANCH] name=[$CI_COMMIT_REF_NAME]"
    - echo "default=[$CI_DEFAULT_BRANCH]"
tag-only:
  rules:
    - if: $CI_COMMIT_TAG =~ /^v\\d/
  script: [echo tagged]
"""


def test_a_tag_builds_as_a_tag_and_a_branch_as_a_branch(farm: Farm, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "lib", {".farm-ci.yml": REFS}, branch="trunk")
    git(repo, "tag", "-a", "v0.2.1", "-m", "release 0.2.1")

    for ref in ("v0.2.1", "refs/tags/v0.2.1"):
        tagged = farm.wait(farm.submit(repo, ref=ref)["id"])
        assert tagged["status"] == "success", tagged
        assert (tagged["ref"], tagged["ref_kind"]) == ("v0.2.1", "tag")
        assert [j["name"] for j in tagged["jobs"]] == ["show", "tag-only"]
        log = farm.log(job_named(tagged, "show")["id"])
        assert "tag=[v0.2.1] branch=[] name=[v0.2.1]" in log
        assert "default=[trunk]" in log  # the repository's HEAD, not a constant "main"

    branch = farm.wait(farm.submit(repo, ref="trunk")["id"])
    assert branch["status"] == "success", branch
    assert (branch["ref"], branch["ref_kind"]) == ("trunk", "branch")
    assert [j["name"] for j in branch["jobs"]] == ["show"]
    log = farm.log(job_named(branch, "show")["id"])
    assert "tag=[] branch=[trunk] name=[trunk]" in log and "default=[trunk]" in log


GATED = f"""
image: {BUSYBOX}
stages: [build, deploy]
build:
  stage: build
  script: [mkdir -p out, echo app > out/app.txt]
  artifacts:
    paths: [out/]
deploy:
  stage: deploy
  rules:
    - if: $CI_COMMIT_BRANCH == "main"
      when: manual
  script: [echo deploying]
"""


def _manifest(farm: Farm, build_id: int) -> dict[str, object]:
    with farm.http as h:
        resp = h.get(f"/api/v1/builds/{build_id}/deliverable")
    assert resp.status_code == 200, resp.text
    return dict(json.loads(resp.content))


def test_a_build_blocked_at_a_manual_gate_is_delivered_and_finished_by_playing_it(
    farm: Farm, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "gated", {".farm-ci.yml": GATED}, branch="main")
    waited = farm.cli("submit", str(repo), "--ref", "main", "--wait", "--json", timeout=240)
    assert waited.returncode == 0, waited.stderr
    assert "waiting for manual job deploy" in waited.stderr
    build = json.loads(waited.stdout)
    build_id = build["id"]
    blocked = farm.build(build_id)
    assert (blocked["status"], blocked["status_text"]) == ("manual", "blocked")
    assert job_named(blocked, "deploy")["status"] == "manual"
    assert blocked["deliverable"], blocked
    first = _manifest(farm, build_id)
    assert {j["name"]: j["status"] for j in first["jobs"]} == {  # type: ignore[union-attr]
        "build": "success",
        "deploy": "manual",
    }
    assert [a["job"] for a in first["artifacts"]] == ["build"]  # type: ignore[index]

    released = farm.cli("release", "create", str(build_id), "--version", "9.9.9-gated")
    assert released.returncode == 0, released.stderr
    shown = farm.cli("status", str(build_id))
    assert "blocked (waiting for manual job deploy)" in shown.stderr

    with farm.http as h:
        played = h.post(f"/api/v1/jobs/{job_named(blocked, 'deploy')['id']}/play")
    assert played.status_code == 200, played.text
    done = farm.wait(build_id)
    assert done["status"] == "success", done
    assert done["deliverable"]["digest"] != blocked["deliverable"]["digest"]
    final = _manifest(farm, build_id)
    assert {j["name"]: j["status"] for j in final["jobs"]} == {  # type: ignore[union-attr]
        "build": "success",
        "deploy": "success",
    }
    # The release pinned the deliverable the blocked build had.
    with farm.http as h:
        rel = h.get("/api/v1/releases/gated/9.9.9-gated").json()
    assert rel["deliverable_digest"] == blocked["deliverable"]["digest"]
