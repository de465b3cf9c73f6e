"""state.is_interruptible: GitLab's auto-cancel rule for redundant builds."""

from __future__ import annotations

from farm.domain.state import is_interruptible


def test_only_started_jobs_must_be_interruptible() -> None:
    assert is_interruptible([("running", True, True), ("created", False, False)])
    assert not is_interruptible([("running", False, True), ("pending", True, False)])


def test_finished_non_interruptible_job_protects_the_build() -> None:
    assert not is_interruptible([("success", False, True), ("running", True, True)])


def test_pending_jobs_have_not_started() -> None:
    assert is_interruptible([("pending", False, False), ("pending", True, False)])


def test_build_without_interruptible_jobs_is_never_canceled() -> None:
    assert not is_interruptible([("pending", False, False)])
    assert not is_interruptible([])
