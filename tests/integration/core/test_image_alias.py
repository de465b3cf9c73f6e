"""A pipeline naming a public image runs on its local stand-in (no registry here)."""

from __future__ import annotations

from pathlib import Path

from tests.farmtest import Farm, make_repo


def test_missing_public_image_runs_on_its_local_alias(farm: Farm, tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "alias",
        {".gitlab-ci.yml": "image: busybox:1.36\nj:\n  script: [echo aliased]\n"},
    )
    done = farm.wait(farm.submit(repo)["id"])
    log = farm.log(done["jobs"][0]["id"])
    assert done["status"] == "success", log
    assert "using 'farm/busybox:latest' (FARM_IMAGE_ALIASES)" in log
