"""Coordinator.retry: a person's retry of a failed/canceled job or of a whole build."""

from __future__ import annotations

from pathlib import Path

import pytest
from coordinator_kit import Rig

from farm.domain.statuses import BuildStatus, JobStatus
from farm.errors import Conflict

STAGED = """
stages: [build, test, deploy]
compile: {stage: build, script: [make]}
unit: {stage: test, script: [make test]}
lint: {stage: test, script: [lint]}
ship: {stage: deploy, script: [ship]}
"""


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


def test_retry_a_failed_job_runs_it_again_and_what_it_skipped(rig: Rig) -> None:
    b = rig.start(STAGED)
    rig.run_all_pending(b, failing=("unit",))
    assert rig.build(b).status == BuildStatus.FAILED
    assert rig.statuses(b)["ship"] == JobStatus.SKIPPED
    unit = rig.job(b, "unit")
    build = rig.coord.retry(b, unit.id)
    assert build.status == BuildStatus.RUNNING and build.finished_at is None
    again = rig.job(b, "unit")
    assert (again.status, again.attempt) == (JobStatus.PENDING, 2)
    assert rig.job(b, "ship").status == JobStatus.CREATED
    assert rig.job(b, "lint").status == JobStatus.SUCCESS  # it passed: left alone
    rig.run_all_pending(b)
    assert rig.statuses(b)["ship"] == JobStatus.SUCCESS
    assert rig.build(b).status == BuildStatus.SUCCESS


def test_retry_a_build_retries_every_failed_and_canceled_job(rig: Rig) -> None:
    b = rig.start(STAGED)
    rig.run(b, "compile")
    rig.claim(b, "unit")
    rig.coord.cancel(b)
    assert rig.build(b).status == BuildStatus.CANCELED
    rig.coord.retry(b)
    build = rig.build(b)
    assert not build.cancel_requested
    unit, lint, ship = rig.job(b, "unit"), rig.job(b, "lint"), rig.job(b, "ship")
    assert unit.attempt == 2  # it had started: its first log stays attempt 1
    assert lint.attempt == 2  # retried (canceled while queued): its old message is stale
    assert ship.status == JobStatus.CREATED  # waits for them again
    assert {unit.status, lint.status} == {JobStatus.PENDING}
    rig.run_all_pending(b)
    assert rig.build(b).status == BuildStatus.SUCCESS


def test_only_failed_or_canceled_jobs_retry(rig: Rig) -> None:
    b = rig.start("job: {script: [x]}")
    rig.run(b, "job")
    with pytest.raises(Conflict, match="only failed or canceled"):
        rig.coord.retry(b, rig.job(b, "job").id)
    with pytest.raises(Conflict, match="no failed or canceled job"):
        rig.coord.retry(b)
    assert rig.build(b).status == BuildStatus.SUCCESS
