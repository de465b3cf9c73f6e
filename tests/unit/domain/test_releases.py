"""Release rules, without a database."""

from __future__ import annotations

import pytest

from farm.domain.releases import (
    check_releasable,
    check_version,
    deletion_blockers,
    repost_conflict,
)
from farm.errors import Conflict, InvalidRequest


@pytest.mark.parametrize("version", ["1.0.0", "v2", "2026.11.29+build.7", "main-12"])
def test_good_versions(version: str) -> None:
    check_version(version)


@pytest.mark.parametrize("version", ["", "-1", "1.0 beta", "a/b", "x" * 129, "1.0\x00"])
def test_bad_versions(version: str) -> None:
    with pytest.raises(InvalidRequest, match="invalid version"):
        check_version(version)


def test_only_green_builds_are_releasable() -> None:
    check_releasable(1, "success", "sha256:" + "a" * 64, "app")
    with pytest.raises(InvalidRequest, match="failed"):
        check_releasable(1, "failed", None, "app")
    with pytest.raises(InvalidRequest, match="canceled"):
        check_releasable(1, "canceled", None, "app")
    with pytest.raises(Conflict, match="wait for it"):
        check_releasable(1, "running", None, "app")
    with pytest.raises(Conflict, match="wait for it"):
        check_releasable(1, "success", None, "app")  # the deliverable is not stored yet


def test_project_must_match() -> None:
    with pytest.raises(InvalidRequest, match="belongs to project 'app'"):
        check_releasable(1, "success", "sha256:" + "a" * 64, "app", project="other")


def test_versions_are_immutable() -> None:
    repost_conflict("app", "1.0", existing_build=3, build_id=3)  # the same release again
    with pytest.raises(Conflict, match="immutable"):
        repost_conflict("app", "1.0", existing_build=3, build_id=4)


def test_deletion_blockers() -> None:
    assert deletion_blockers("app", is_latest=False) == []
    assert deletion_blockers("app", is_latest=True) == ["it is the latest release of app"]
    assert deletion_blockers("app", False, [7]) == ["rollout 7 references it"]
