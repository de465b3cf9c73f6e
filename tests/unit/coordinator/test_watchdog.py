"""watchdog() and recover(): lost workers and coordinator restarts (no sleeping: the fake
store backdates heartbeats)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from coordinator_kit import Rig

from farm.domain.clock import utcnow
from farm.domain.statuses import BuildStatus, FailureReason, JobStatus, SkipReason

LEASE = 30
TWO = """
stages: [build, test]
compile: {stage: build, script: [make]}
unit: {stage: test, script: [make test]}
"""


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path, job_lease_seconds=LEASE, max_lost_retries=2)


def _lose(rig: Rig, build_id: int, name: str) -> int:
    """Claim the job's current attempt and let its worker go silent past the lease."""
    job = rig.claim(build_id, name)
    rig.store.backdate_heartbeat(job.id, LEASE + 5)
    return job.id


def test_a_live_attempt_is_left_alone(rig: Rig) -> None:
    b = rig.start(TWO)
    job = rig.claim(b, "compile")
    rig.store.backdate_heartbeat(job.id, LEASE - 5)
    assert rig.coord.watchdog() == []
    assert rig.job(b, "compile").status == JobStatus.RUNNING


def test_lost_attempt_is_redispatched_as_the_next_attempt(rig: Rig) -> None:
    b = rig.start(TWO)
    job_id = _lose(rig, b, "compile")
    assert rig.coord.watchdog() == [job_id]
    job = rig.job(b, "compile")
    assert (job.status, job.attempt, job.lost_count, job.worker) == (JobStatus.PENDING, 2, 1, None)
    assert rig.dispatcher.calls[-1] == (job_id, 2, None)
    # the lost worker comes back: its claim, heartbeat and report are all refused
    assert not rig.heartbeat(job_id, 1)
    assert rig.coord.claim(job_id, 1, "w1") is None
    rig.run(b, "compile")
    assert rig.job(b, "compile").attempt == 2
    assert rig.job(b, "unit").status == JobStatus.PENDING


def test_worker_lost_after_max_lost_retries(rig: Rig) -> None:
    b = rig.start(TWO)
    for lost in (1, 2):
        job_id = _lose(rig, b, "compile")
        rig.coord.watchdog()
        job = rig.job(b, "compile")
        assert (job.status, job.attempt, job.lost_count) == (JobStatus.PENDING, lost + 1, lost)
    _lose(rig, b, "compile")
    assert rig.coord.watchdog() == [job_id]
    job = rig.job(b, "compile")
    assert (job.status, job.reason, job.attempt) == (JobStatus.FAILED, FailureReason.WORKER_LOST, 3)
    unit = rig.job(b, "unit")
    assert (unit.status, unit.reason) == (JobStatus.SKIPPED, SkipReason.UPSTREAM_FAILED)
    assert rig.build(b).status == BuildStatus.FAILED
    assert [x.status for x in rig.finished] == [BuildStatus.FAILED]
    assert rig.coord.watchdog() == []  # nothing left to watch


def test_worker_lost_releases_the_resource_group(rig: Rig) -> None:
    text = "deploy: {script: [d], resource_group: prod}"
    first, second = rig.start(text), rig.start(text)
    assert rig.job(second, "deploy").status == JobStatus.CREATED
    for _ in range(3):
        _lose(rig, first, "deploy")
        rig.coord.watchdog()
        # a lost attempt keeps the group while it is retried
        assert rig.job(second, "deploy").status in (JobStatus.CREATED, JobStatus.PENDING)
    assert rig.job(first, "deploy").status == JobStatus.FAILED
    assert rig.job(second, "deploy").status == JobStatus.PENDING


def test_recover_redispatches_pending_jobs(rig: Rig) -> None:
    rig.dispatcher.down = True  # the broker was down when the build started
    b = rig.start(TWO)
    job = rig.job(b, "compile")
    assert job.status == JobStatus.PENDING and rig.dispatcher.calls == []
    rig.dispatcher.down = False
    assert rig.coord.recover() == 1
    assert rig.dispatcher.calls == [(job.id, 1, None)]
    rig.run_all_pending(b)
    assert rig.build(b).status == BuildStatus.SUCCESS


def test_recover_twice_is_harmless(rig: Rig) -> None:
    b = rig.start(TWO)
    rig.coord.recover()
    rig.coord.recover()
    job = rig.job(b, "compile")
    assert rig.dispatcher.calls == [(job.id, 1, None)] * 3  # duplicates: claim refuses them
    assert rig.coord.claim(job.id, 1, "w1") is not None
    assert rig.coord.claim(job.id, 1, "w2") is None


def test_recover_frees_a_group_taken_by_a_job_that_never_queued(rig: Rig) -> None:
    b = rig.start(
        """
        stages: [build, deploy]
        compile: {stage: build, script: [make]}
        deploy: {stage: deploy, script: [d], resource_group: prod}
        """
    )
    deploy = rig.job(b, "deploy")
    # a coordinator died between taking the group for a created job and queueing it
    assert rig.store.take_resource_group("prod", deploy.id)
    assert rig.store.take_resource_group("stage", 999)  # held by a job that is gone
    rig.coord.recover()
    assert rig.store.held_resource_groups() == []
    rig.run(b, "compile")
    assert rig.job(b, "deploy").status == JobStatus.PENDING
    assert rig.store.resource_group_holder("prod") == deploy.id


def test_recover_advances_active_builds(rig: Rig) -> None:
    b = rig.start(TWO)
    job = rig.claim(b, "compile")
    # the coordinator died after recording the result, before advancing the build
    assert rig.store.cas_job(job.id, ["running"], expect_attempt=1, status="success")
    assert rig.job(b, "unit").status == JobStatus.CREATED
    rig.coord.recover()
    assert rig.job(b, "unit").status == JobStatus.PENDING


def test_recover_keeps_the_countdown_of_a_delayed_job(rig: Rig) -> None:
    b = rig.start("later: {script: [x], when: delayed, start_in: 30 minutes}")
    rig.coord.recover()  # every API start runs this
    job = rig.job(b, "later")
    assert all(countdown for job_id, _, countdown in rig.dispatcher.calls if job_id == job.id)


def test_a_retry_does_not_send_the_build_back_to_pending(rig: Rig) -> None:
    b = rig.start(
        "stages: [a, b]\nx: {stage: a, script: [x], retry: 1}\ny: {stage: b, script: [y]}"
    )
    rig.claim(b, "x")
    started = rig.build(b).started_at
    rig.finish(b, "x", exit_code=1)  # retried: attempt 2 is pending
    rig.coord.recover()  # or any other advance of the build (a group release, a cancel)
    assert rig.build(b).status == BuildStatus.RUNNING
    rig.claim(b, "x")
    assert rig.build(b).started_at == started


def test_an_api_restart_gives_running_attempts_a_whole_lease(rig: Rig) -> None:
    b = rig.start(TWO)
    job = rig.claim(b, "compile")
    # The API was down for 43 s: the worker kept running and could not report meanwhile.
    rig.store.backdate_heartbeat(job.id, 43)
    rig.coord.up_since = utcnow()  # ... and has just started again
    assert rig.coord.watchdog() == []
    assert rig.job(b, "compile").status == JobStatus.RUNNING
    assert rig.heartbeat(job.id, 1)  # the worker's retried report gets through
    rig.store.backdate_heartbeat(job.id, LEASE + 5)
    rig.coord.up_since = utcnow() - timedelta(seconds=LEASE + 1)  # a whole lease, silent
    assert rig.coord.watchdog() == [job.id]
    assert (rig.job(b, "compile").status, rig.job(b, "compile").attempt) == (JobStatus.PENDING, 2)
