"""Masked variables reach the job but never the log; the deliverable lists packed files."""

from __future__ import annotations

from pathlib import Path

from tests.farmtest import BUSYBOX, Farm, job_named, make_repo

PIPELINE = f"""
image: {BUSYBOX}
leak:
  script:
    - echo "token is $DEPLOY_TOKEN"
    - printf '%s' "$DEPLOY_TOKEN" | cut -c1-6; printf '%s\\n' "$DEPLOY_TOKEN" | cut -c7-
    - test "$DEPLOY_TOKEN" = s3cr3t-t0ken-value
    - mkdir -p out/sub && echo a > out/a.txt && echo b > out/sub/b.txt
  artifacts:
    paths: [out/]
"""


def test_secret_is_masked_in_logs_and_hidden_from_the_build(farm: Farm, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "secret", {".farm-ci.yml": PIPELINE})
    build = farm.submit(repo, secrets={"DEPLOY_TOKEN": "s3cr3t-t0ken-value"})
    done = farm.wait(build["id"])
    job = job_named(done, "leak")
    log = farm.log(job["id"])
    assert done["status"] == "success", log
    assert "s3cr3t-t0ken-value" not in log
    assert "token is [MASKED]" in log
    with farm.http as h:
        assert "s3cr3t" not in h.get(f"/api/v1/builds/{build['id']}").text
        manifest = h.get(f"/api/v1/builds/{build['id']}/deliverable").json()
    (art,) = job["artifacts"]
    assert {"out/a.txt", "out/sub/b.txt"} <= set(art["files"])
    assert {"out/a.txt", "out/sub/b.txt"} <= set(manifest["artifacts"][0]["files"])
