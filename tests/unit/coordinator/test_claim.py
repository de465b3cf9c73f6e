"""claim(), the log request (heartbeat and log), live_attempts(): a worker's side, all CAS."""

from __future__ import annotations

from pathlib import Path

import pytest
from coordinator_kit import Rig

from farm.domain.statuses import BuildStatus, JobStatus

ONE = "job: {script: [x]}"


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path, log_max_bytes=50)


def test_claim_is_a_compare_and_set(rig: Rig) -> None:
    b = rig.start(ONE)
    job = rig.job(b, "job")
    first = rig.coord.claim(job.id, 1, "w1")
    assert first is not None
    assert (first.status, first.worker, first.attempt) == (JobStatus.RUNNING, "w1", 1)
    assert first.started_at is not None and first.heartbeat_at is not None
    # the same message delivered twice, or to a second worker: refused
    assert rig.coord.claim(job.id, 1, "w2") is None
    assert rig.job(b, "job").worker == "w1"


@pytest.mark.parametrize("attempt", [0, 2])
def test_claim_of_another_attempt_is_refused(rig: Rig, attempt: int) -> None:
    b = rig.start(ONE)
    assert rig.coord.claim(rig.job(b, "job").id, attempt, "w1") is None
    assert rig.job(b, "job").status == JobStatus.PENDING


def test_claim_of_a_job_not_yet_queued_is_refused(rig: Rig) -> None:
    b = rig.start("stages: [a, b]\nfirst: {stage: a, script: [x]}\nsecond: {stage: b, script: [y]}")
    assert rig.coord.claim(rig.job(b, "second").id, 1, "w1") is None


def test_first_claim_makes_the_build_running(rig: Rig) -> None:
    b = rig.start("one: {script: [x]}\ntwo: {script: [y]}")
    assert rig.build(b).status == BuildStatus.PENDING and rig.build(b).started_at is None
    rig.claim(b, "one")
    build = rig.build(b)
    assert build.status == BuildStatus.RUNNING and build.started_at is not None
    started = build.started_at
    rig.claim(b, "two")
    assert rig.build(b).started_at == started  # the second claim does not restart it


def test_heartbeat_is_true_while_the_attempt_runs(rig: Rig) -> None:
    b = rig.start(ONE)
    job = rig.claim(b, "job")
    assert rig.heartbeat(job.id, 1)
    assert not rig.heartbeat(job.id, 2)


def test_heartbeat_is_false_after_cancel(rig: Rig) -> None:
    b = rig.start(ONE)
    job = rig.claim(b, "job")
    rig.coord.cancel(b)
    assert not rig.heartbeat(job.id, 1)
    assert rig.job(b, "job").status == JobStatus.CANCELED


def test_heartbeat_is_false_for_a_job_never_claimed(rig: Rig) -> None:
    b = rig.start(ONE)
    assert not rig.heartbeat(rig.job(b, "job").id, 1)


def test_log_is_capped_with_one_marker(rig: Rig) -> None:
    b = rig.start(ONE)
    job = rig.claim(b, "job")
    assert rig.log(job.id, 1, "hello\n")
    assert not rig.log(job.id, 1, "x" * 100)
    assert not rig.log(job.id, 1, "zzz")  # full: dropped, no second marker
    text = rig.store.read_log(job.id, 1)
    assert text.startswith("hello\n" + "x" * 44)
    assert text.count("log truncated") == 1 and "zzz" not in text
    assert rig.job(b, "job").log_bytes == 50


def test_log_of_a_stale_attempt_is_refused(rig: Rig) -> None:
    b = rig.start(ONE)
    job = rig.claim(b, "job")
    assert not rig.log(job.id, 2, "late")
    assert rig.store.read_log(job.id, 2) == ""


def test_live_attempts(rig: Rig) -> None:
    b = rig.start("one: {script: [x]}\ntwo: {script: [y]}")
    one = rig.claim(b, "one")
    two = rig.job(b, "two")
    assert rig.coord.live_attempts([(one.id, 1), (one.id, 2), (two.id, 1), (999, 1)]) == [
        True,
        False,
        False,  # pending, not running
        False,  # no such job
    ]
