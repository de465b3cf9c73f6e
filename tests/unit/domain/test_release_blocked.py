"""A build blocked at a manual gate has a deliverable and may be released."""

from __future__ import annotations

import pytest

from farm.domain.releases import check_releasable
from farm.domain.statuses import build_status_text
from farm.errors import Conflict, InvalidRequest


def test_a_blocked_build_with_its_deliverable_is_releasable() -> None:
    check_releasable(1, "manual", "sha256:" + "a" * 64, "app")


def test_running_red_and_deliverable_less_builds_are_still_refused() -> None:
    with pytest.raises(Conflict):
        check_releasable(1, "running", None, "app")
    with pytest.raises(Conflict):
        check_releasable(1, "manual", None, "app")
    with pytest.raises(InvalidRequest):
        check_releasable(1, "failed", None, "app")


def test_people_read_blocked_for_a_manual_build() -> None:
    assert build_status_text("manual") == "blocked"
    assert build_status_text("success") == "success"
