"""Project secrets through the whole farm: set over the API, given to a job on a real
worker and container, never in its log (plain, base64, hex, reversed, spaced out), never
in an API document, never in the database file.  Protected ones skip unprotected refs,
and a namesake repository (another ``proj-secrets``: the same project) gets none."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tests.farmtest import BUSYBOX, Farm, commit_files, git, job_named, make_repo

pytestmark = pytest.mark.integration

TOKEN = "pr0ject-t0ken-Xy9"  # every ref
GUARDED = "guarded-d3ploy-Qz7"  # protected refs only

PIPELINE = f"""
image: {BUSYBOX}
leak:
  script:
    - echo "plain $TOKEN"
    - printf '%s' "$TOKEN" | base64
    - echo "$TOKEN" | rev
    - echo "$TOKEN" | sed 's/./& /g'
    - echo "$TOKEN" | sed 's/./&-/g'
    - echo "$TOKEN" | fold -w1
    - printf '%s' "$TOKEN" | od -An -tx1 | tr -d ' \\n'; echo
    - echo "guarded ${{GUARDED:-absent}} protected=$CI_COMMIT_REF_PROTECTED"
    - printf '%s' "${{GUARDED:-}}" | base64; echo
    - test "${{#TOKEN}}" = {len(TOKEN)}  # (the value itself must not be in this file)
"""

SHOW = f"""
image: {BUSYBOX}
show:
  script:
    - echo "token ${{TOKEN:-absent}} guarded ${{GUARDED:-absent}}"
      "protected=$CI_COMMIT_REF_PROTECTED"
"""


def forms(value: str) -> list[str]:
    """What the job prints of ``value`` (as the shell commands above print it)."""
    return [
        value,
        base64.b64encode(value.encode()).decode(),
        value[::-1],
        " ".join(value),
        "-".join(value),
        "\n".join(value),
        value.encode().hex(),
    ]


def test_project_secrets_reach_jobs_masked_and_protected(farm: Farm, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "proj-secrets", {".farm-ci.yml": PIPELINE})
    git(repo, "branch", "feature")
    base = "/api/v1/projects/proj-secrets"
    with farm.http as h:
        unbound = h.put(f"{base}/secrets/TOKEN", json={"value": TOKEN})
        assert unbound.status_code == 422 and "farm secret repo" in unbound.json()["detail"]
        bound = h.put(f"{base}/repo", json={"repo": str(repo)})
        assert bound.status_code == 200, bound.text
        assert h.put(f"{base}/secrets/TOKEN", json={"value": TOKEN}).status_code == 201
        put = h.put(f"{base}/secrets/GUARDED", json={"value": GUARDED, "protected": True})
        assert put.status_code == 201, put.text

    main = farm.wait(farm.submit(repo, ref="main")["id"])
    feature = farm.wait(farm.submit(repo, ref="feature")["id"])
    main_log = farm.log(job_named(main, "leak")["id"])
    feature_log = farm.log(job_named(feature, "leak")["id"])
    assert main["status"] == "success", main_log
    assert feature["status"] == "success", feature_log

    for log in (main_log, feature_log):
        assert "plain [MASKED]" in log
        for form in forms(TOKEN) + forms(GUARDED):
            assert form not in log, (form, log)
    # main is protected by default: the job got the protected secret (masked);
    # feature is not: the variable is absent.
    assert "guarded [MASKED] protected=true" in main_log
    assert "guarded absent protected=false" in feature_log

    with farm.http as h:
        texts = [
            h.get(path).text
            for path in (
                f"/api/v1/builds/{main['id']}",
                f"/api/v1/builds/{feature['id']}",
                f"/api/v1/jobs/{job_named(main, 'leak')['id']}",
                f"{base}/secrets",
                f"/api/v1/builds/{main['id']}/deliverable",
            )
        ]
    for text in texts:
        assert TOKEN not in text and GUARDED not in text
    raw = b"".join(p.read_bytes() for p in farm.data_dir.glob("farm.db*"))
    assert raw, "the farm's SQLite database is not where this test looks"
    assert TOKEN.encode() not in raw and GUARDED.encode() not in raw


def test_a_namesake_repository_gets_none_of_the_projects_secrets(
    farm: Farm, tmp_path: Path
) -> None:
    """Anyone may submit another repository named like a project (so of that project):
    its builds, even of main, run without the project's secrets."""
    files = {".farm-ci.yml": SHOW}
    repo = make_repo(tmp_path / "namesake", files)
    evil = make_repo(tmp_path / "elsewhere" / "namesake", files)
    base = "/api/v1/projects/namesake"
    with farm.http as h:
        assert h.put(f"{base}/repo", json={"repo": str(repo)}).status_code == 200
        assert h.put(f"{base}/secrets/TOKEN", json={"value": TOKEN}).status_code == 201
        put = h.put(f"{base}/secrets/GUARDED", json={"value": GUARDED, "protected": True})
        assert put.status_code == 201, put.text
        listed = h.get(f"{base}/secrets").json()
    assert listed["repo"] == str(repo) and len(listed["secrets"]) == 2

    theirs = farm.wait(farm.submit(evil, ref="main")["id"])
    mine = farm.wait(farm.submit(repo, ref="main")["id"])
    assert theirs["project"] == mine["project"] == "namesake"
    their_log = farm.log(job_named(theirs, "show")["id"])
    my_log = farm.log(job_named(mine, "show")["id"])
    assert theirs["status"] == mine["status"] == "success", (their_log, my_log)
    assert "token absent guarded absent protected=false" in their_log
    assert "token [MASKED] guarded [MASKED] protected=true" in my_log
    for form in forms(TOKEN) + forms(GUARDED):
        assert form not in their_log and form not in my_log, form


def test_a_commit_that_is_not_on_the_ref_is_refused(farm: Farm, tmp_path: Path) -> None:
    """``ref=main`` with a commit from another branch would build that code as main."""
    repo = make_repo(tmp_path / "off-ref", {".farm-ci.yml": PIPELINE})
    git(repo, "checkout", "-q", "-b", "feature")
    side = commit_files(repo, {"side.txt": "not on main\n"})
    with farm.http as h:
        resp = h.post("/api/v1/builds", json={"repo": str(repo), "ref": "main", "commit": side})
    assert resp.status_code == 422, resp.text
    assert f"commit {side!r} is not on ref 'main'" in resp.json()["detail"]
