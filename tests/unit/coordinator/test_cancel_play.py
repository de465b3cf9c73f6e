"""cancel(), play() and resource groups (one holder across builds)."""

from __future__ import annotations

from pathlib import Path

import pytest
from coordinator_kit import Rig

from farm.coordinator.service import JobResult
from farm.domain.statuses import BuildStatus, FailureReason, JobStatus
from farm.errors import Conflict

STAGED = """
stages: [build, test, deploy]
compile: {stage: build, script: [make]}
slow: {stage: build, script: [sleep]}
unit: {stage: test, script: [make test]}
ship: {stage: deploy, script: [ship], when: manual}
"""


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


# --- cancel --------------------------------------------------------------------------


def test_cancel_of_a_finished_build_is_a_conflict(rig: Rig) -> None:
    b = rig.start("job: {script: [x]}")
    rig.run(b, "job")
    with pytest.raises(Conflict, match="already finished"):
        rig.coord.cancel(b)
    assert rig.build(b).status == BuildStatus.SUCCESS


def test_cancel_stops_waiting_and_running_jobs(rig: Rig) -> None:
    b = rig.start(STAGED)
    running = rig.claim(b, "compile")
    build = rig.coord.cancel(b)  # the build, without its jobs
    assert build.status == BuildStatus.CANCELED and build.cancel_requested
    assert build.finished_at is not None and build.jobs == ()
    for job in rig.build(b).jobs:
        assert (job.status, job.reason) == (JobStatus.CANCELED, FailureReason.CANCELED), job.name
    assert rig.store.calls["cas_jobs_of_build"] == 1  # one statement for all of them
    assert rig.store.calls["cas_job"] == 1  # the claim's
    # the worker learns it on its next heartbeat; its late report changes nothing
    assert not rig.heartbeat(running.id, 1)
    after = rig.coord.finish(running.id, 1, JobResult(exit_code=0))
    assert after.status == JobStatus.CANCELED
    assert rig.dispatched(b) == ["compile", "slow"]  # nothing new was queued
    assert [x.status for x in rig.finished] == [BuildStatus.CANCELED]
    with pytest.raises(Conflict):
        rig.coord.cancel(b)


def test_cancel_releases_the_resource_group(rig: Rig) -> None:
    text = "deploy: {script: [d], resource_group: prod}"
    first, second = rig.start(text), rig.start(text)
    assert rig.job(second, "deploy").status == JobStatus.CREATED
    rig.coord.cancel(first)
    assert rig.job(second, "deploy").status == JobStatus.PENDING


# --- play ----------------------------------------------------------------------------


def test_play_a_manual_job(rig: Rig) -> None:
    b = rig.start(STAGED)
    rig.run_all_pending(b)
    ship = rig.job(b, "ship")
    assert ship.status == JobStatus.MANUAL and "ship" not in rig.dispatched(b)
    played = rig.coord.play(ship.id)
    assert played.status == JobStatus.PENDING
    assert rig.dispatcher.calls[-1] == (ship.id, 1, None)
    assert rig.build(b).status == BuildStatus.RUNNING
    rig.run(b, "ship")
    assert rig.job(b, "ship").status == JobStatus.SUCCESS
    assert rig.build(b).status == BuildStatus.SUCCESS


def test_play_unblocks_a_blocking_manual_job(rig: Rig) -> None:
    b = rig.start(
        """
        stages: [deploy, verify]
        deploy: {stage: deploy, script: [d], when: manual, allow_failure: false}
        smoke: {stage: verify, script: [s]}
        """
    )
    assert rig.build(b).status == BuildStatus.MANUAL
    rig.coord.play(rig.job(b, "deploy").id)
    rig.run(b, "deploy")
    assert rig.job(b, "smoke").status == JobStatus.PENDING
    rig.run(b, "smoke")
    assert rig.build(b).status == BuildStatus.SUCCESS


def test_play_of_a_job_that_is_not_manual_is_a_conflict(rig: Rig) -> None:
    b = rig.start(STAGED)
    with pytest.raises(Conflict, match="not waiting to be played"):
        rig.coord.play(rig.job(b, "compile").id)
    ship = rig.job(b, "ship")
    with pytest.raises(Conflict):  # still created: its stage has not been reached
        rig.coord.play(ship.id)


def test_play_twice_is_a_conflict(rig: Rig) -> None:
    b = rig.start("ship: {script: [s], when: manual}")
    ship = rig.job(b, "ship")
    rig.coord.play(ship.id)
    with pytest.raises(Conflict):
        rig.coord.play(ship.id)
    assert rig.dispatched(b) == ["ship"]


# --- resource groups -----------------------------------------------------------------

DEPLOY = """
stages: [build, deploy]
compile: {stage: build, script: [make]}
deploy: {stage: deploy, script: [d], resource_group: prod}
"""


def test_only_one_holder_across_builds_and_release_wakes_the_waiting_build(rig: Rig) -> None:
    first, second = rig.start(DEPLOY), rig.start(DEPLOY)
    rig.run(first, "compile")
    rig.run(second, "compile")
    assert rig.job(first, "deploy").status == JobStatus.PENDING
    waiting = rig.job(second, "deploy")
    assert waiting.status == JobStatus.CREATED  # waits for the group, still created
    assert rig.build(second).status == BuildStatus.RUNNING  # not settled: it waits
    assert rig.store.resource_group_holder("prod") == rig.job(first, "deploy").id
    rig.claim(first, "deploy")
    rig.coord.advance(second)  # advancing again does not take a busy group
    assert rig.job(second, "deploy").status == JobStatus.CREATED
    rig.finish(first, "deploy")
    assert rig.build(first).status == BuildStatus.SUCCESS
    assert rig.job(second, "deploy").status == JobStatus.PENDING
    assert rig.store.resource_group_holder("prod") == waiting.id
    rig.run(second, "deploy")
    assert rig.build(second).status == BuildStatus.SUCCESS
    assert rig.store.resource_group_holder("prod") is None


def test_a_retried_holder_keeps_the_group(rig: Rig) -> None:
    text = "deploy: {script: [d], resource_group: prod, retry: 1}"
    first, second = rig.start(text), rig.start(text)
    rig.run(first, "deploy", exit_code=1)
    assert rig.job(first, "deploy").attempt == 2
    assert rig.job(second, "deploy").status == JobStatus.CREATED
    rig.run(first, "deploy", exit_code=1)
    assert rig.job(second, "deploy").status == JobStatus.PENDING


def test_a_finished_holder_still_recorded_is_taken_over(rig: Rig) -> None:
    text = "deploy: {script: [d], resource_group: prod}"
    first = rig.start(text)
    holder = rig.job(first, "deploy")
    # the coordinator died between the holder's last transition and the release
    assert rig.store.cas_job(holder.id, ["pending"], status="success")
    second = rig.start(text)
    assert rig.job(second, "deploy").status == JobStatus.PENDING
    assert rig.store.resource_group_holder("prod") == rig.job(second, "deploy").id


def test_play_into_a_busy_group_is_a_conflict(rig: Rig) -> None:
    rig.start("deploy: {script: [d], resource_group: prod}")
    b = rig.start("ship: {script: [s], when: manual, resource_group: prod}")
    ship = rig.job(b, "ship")
    with pytest.raises(Conflict, match="busy"):
        rig.coord.play(ship.id)
    assert rig.job(b, "ship").status == JobStatus.MANUAL


def test_a_build_started_by_play_has_a_start_time(rig: Rig) -> None:
    b = rig.start("deploy: {script: [d], when: manual, allow_failure: false}")
    rig.coord.play(rig.job(b, "deploy").id)
    rig.run(b, "deploy")
    build = rig.build(b)
    assert build.status == BuildStatus.SUCCESS
    assert build.started_at is not None
