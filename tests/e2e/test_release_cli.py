"""Continuous delivery end to end: a green build's provenance is verified offline,
the build is released with the CLI, versions stay immutable, red builds are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.farmtest import BUSYBOX, Farm, job_named, make_repo

pytestmark = pytest.mark.e2e

PIPELINE = f"""
image: {BUSYBOX}
stages: [build, package]
build:
  stage: build
  script:
    - mkdir -p out && echo "built $CI_COMMIT_SHORT_SHA" > out/app.txt
  artifacts:
    paths: [out/]
package:
  stage: package
  script:
    - mkdir -p dist && cp out/app.txt dist/app.txt && echo packaged >> dist/app.txt
  artifacts:
    paths: [dist/]
"""

RED = f"""
image: {BUSYBOX}
boom:
  script: [exit 3]
"""


def test_green_build_provenance_release_and_refusals(farm: Farm, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "shop", {".farm-ci.yml": PIPELINE})
    done = farm.wait(farm.submit(repo, ref="main")["id"])
    assert done["status"] == "success", done
    build_id = done["id"]
    artifact_digests = {
        a["digest"] for name in ("build", "package") for a in job_named(done, name)["artifacts"]
    }

    # Provenance: signed with the farm's key, checked offline against downloaded bytes.
    key = tmp_path / "farm.pub"
    with farm.http as h:
        key.write_bytes(h.get("/api/v1/keys/provenance.pub").content)
        envelope = h.get(f"/api/v1/builds/{build_id}/provenance").json()
    statement_file = tmp_path / "provenance.json"
    statement_file.write_text(json.dumps(envelope))
    verified = farm.cli(
        "artifacts", "verify", "--provenance", str(statement_file), "--key", str(key)
    )
    assert verified.returncode == 0, verified.stderr
    assert f"build {build_id} of" in verified.stdout
    assert "3 subject(s) match" in verified.stdout  # two archives and the deliverable
    for digest in artifact_digests:
        assert digest in verified.stdout

    # Artifacts can be found by project, ref and commit.
    listed = farm.cli(
        "artifacts", "ls", "--project", "shop", "--ref", "main", "--commit", done["commit"][:8]
    )
    assert listed.returncode == 0, listed.stderr
    assert all(d in listed.stdout for d in artifact_digests)

    # Release it; the version is immutable afterwards.
    created = farm.cli("release", "create", str(build_id), "--version", "1.0.0")
    assert created.returncode == 0, created.stderr
    assert f"released: shop 1.0.0 = build {build_id}" in created.stdout
    again = farm.cli("release", "create", str(build_id), "--version", "1.0.0")
    assert again.returncode == 0 and "already released" in again.stdout

    second = farm.wait(farm.submit(repo, ref="main")["id"])
    assert second["status"] == "success"
    clash = farm.cli("release", "create", str(second["id"]), "--version", "1.0.0")
    assert clash.returncode == 2 and "immutable" in clash.stderr

    red_repo = make_repo(tmp_path / "shop-red", {".farm-ci.yml": RED})
    red = farm.wait(farm.submit(red_repo, ref="main")["id"])
    assert red["status"] == "failed"
    refused = farm.cli("release", "create", str(red["id"]), "--version", "0.1.0")
    assert refused.returncode == 2 and "only a successful build" in refused.stderr
    with farm.http as h:
        missing = h.get(f"/api/v1/builds/{red['id']}/provenance")
    assert missing.status_code == 404

    shown = farm.cli("release", "ls", "--project", "shop")
    assert shown.returncode == 0
    assert shown.stdout.split()[:4] == ["shop", "1.0.0", "build", str(build_id)]
    assert done["commit"][:12] in shown.stdout

    # GC with the default grace window never touches a fresh farm's blobs.
    dry = json.loads(farm.cli("gc", "--dry-run", "--json", check=True).stdout)
    assert dry["dry_run"] and dry["swept"] == 0
