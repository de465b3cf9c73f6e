"""finish(): stale and duplicate reports, retry:, artifacts."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from coordinator_kit import Rig, artifact

from farm.coordinator.service import JobResult
from farm.domain.clock import utcnow
from farm.domain.statuses import BuildStatus, FailureReason, JobStatus
from farm.errors import UploadError

TWO = """
stages: [build, test]
compile: {stage: build, script: [make]}
unit: {stage: test, script: [make test]}
"""


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


def test_stale_attempt_report_is_ignored(rig: Rig) -> None:
    b = rig.start(TWO)
    job = rig.claim(b, "compile")
    after = rig.coord.finish(job.id, job.attempt + 1, JobResult(exit_code=0))
    assert (after.status, after.attempt) == (JobStatus.RUNNING, 1)
    after = rig.coord.finish(job.id, 0, JobResult(exit_code=1))
    assert after.status == JobStatus.RUNNING
    assert rig.job(b, "unit").status == JobStatus.CREATED


def test_report_for_a_job_not_running_is_ignored(rig: Rig) -> None:
    b = rig.start(TWO)
    job = rig.job(b, "compile")  # pending, never claimed
    assert rig.coord.finish(job.id, 1, JobResult(exit_code=0)).status == JobStatus.PENDING


def test_duplicate_finish_is_a_no_op(rig: Rig) -> None:
    b = rig.start(TWO)
    digest = rig.blobs.put(b"out")
    arts = (artifact("compile", digest, 3),)
    rig.run(b, "compile", artifacts=arts)
    calls = list(rig.dispatcher.calls)
    job = rig.job(b, "compile")
    again = rig.coord.finish(job.id, 1, JobResult(exit_code=1, artifacts=arts))
    assert (again.status, again.exit_code) == (JobStatus.SUCCESS, 0)
    assert rig.dispatcher.calls == calls
    assert len(rig.job(b, "compile").artifacts) == 1


def test_retry_dispatches_the_next_attempt(rig: Rig) -> None:
    b = rig.start("flaky: {script: [x], retry: 2}")
    job = rig.job(b, "flaky")
    for attempt in (1, 2):
        rig.run(b, "flaky", exit_code=1)
        again = rig.job(b, "flaky")
        assert (again.status, again.attempt) == (JobStatus.PENDING, attempt + 1)
        assert (again.exit_code, again.reason, again.worker) == (None, None, None)
        assert rig.dispatcher.calls[-1] == (job.id, attempt + 1, None)
    rig.run(b, "flaky", exit_code=1)
    last = rig.job(b, "flaky")
    assert (last.status, last.attempt, last.reason) == (JobStatus.FAILED, 3, "script_failure")
    assert rig.build(b).status == BuildStatus.FAILED


def test_a_retried_attempt_can_still_succeed(rig: Rig) -> None:
    b = rig.start("flaky: {script: [x], retry: 1}")
    rig.run(b, "flaky", exit_code=1)
    rig.run(b, "flaky")
    assert rig.job(b, "flaky").attempt == 2
    assert rig.build(b).status == BuildStatus.SUCCESS


def test_report_of_the_attempt_before_a_retry_is_ignored(rig: Rig) -> None:
    b = rig.start("flaky: {script: [x], retry: 1}")
    rig.run(b, "flaky", exit_code=1)
    rig.claim(b, "flaky")
    job = rig.job(b, "flaky")
    assert rig.coord.finish(job.id, 1, JobResult(exit_code=0)).status == JobStatus.RUNNING


@pytest.mark.parametrize(
    ("exit_code", "retried"),
    [(137, True), (1, False)],
)
def test_retry_exit_codes(rig: Rig, exit_code: int, retried: bool) -> None:
    b = rig.start("oom: {script: [x], retry: {max: 1, exit_codes: [137]}}")
    rig.run(b, "oom", exit_code=exit_code)
    job = rig.job(b, "oom")
    assert (job.status, job.attempt) == (
        (JobStatus.PENDING, 2) if retried else (JobStatus.FAILED, 1)
    )


@pytest.mark.parametrize(
    ("reason", "retried"),
    [
        (FailureReason.TIMEOUT, False),
        (FailureReason.EXECUTOR_ERROR, True),
        (FailureReason.CANCELED, False),
    ],
)
def test_retry_when(rig: Rig, reason: str, retried: bool) -> None:
    b = rig.start("j: {script: [x], retry: {max: 2, when: [runner_system_failure]}}")
    rig.run(b, "j", exit_code=None, reason=reason)
    job = rig.job(b, "j")
    assert (job.attempt == 2) is retried
    if not retried:
        assert (job.status, job.reason) == (JobStatus.FAILED, reason)


def test_script_failure_is_not_retried_when_only_system_failures_are(rig: Rig) -> None:
    b = rig.start("j: {script: [x], retry: {max: 2, when: [runner_system_failure]}}")
    rig.run(b, "j", exit_code=3)
    assert rig.job(b, "j").status == JobStatus.FAILED


def test_artifact_that_was_not_uploaded_is_refused(rig: Rig) -> None:
    b = rig.start(TWO)
    rig.claim(b, "compile")
    missing = artifact("compile", "sha256:" + "0" * 64, 10)
    with pytest.raises(UploadError, match="was not uploaded"):
        rig.finish(b, "compile", artifacts=(missing,))
    job = rig.job(b, "compile")  # nothing half-done: the worker may report again
    assert job.status == JobStatus.RUNNING and job.artifacts == ()
    rig.finish(b, "compile", artifacts=(artifact("compile", rig.blobs.put(b"x"), 1),))
    assert rig.job(b, "compile").status == JobStatus.SUCCESS


def test_artifacts_are_recorded_with_expiry_and_files(rig: Rig) -> None:
    b = rig.start(TWO)
    d1, d2 = rig.blobs.put(b"archive"), rig.blobs.put(b"A=1\n")
    before = utcnow()
    rig.claim(b, "compile")
    rig.coord.finish(
        rig.job(b, "compile").id,
        1,
        JobResult(
            exit_code=0,
            coverage=87.5,
            artifacts=(
                artifact("compile", d1, 7, expire_in=3600, files=("out/a", "out/b")),
                artifact("build.env", d2, 4, kind="dotenv"),
            ),
        ),
    )
    job = rig.job(b, "compile")
    assert job.coverage == 87.5
    archive, dotenv = job.artifacts
    assert (archive.name, archive.kind, archive.digest, archive.size) == (
        "compile",
        "archive",
        d1,
        7,
    )
    assert archive.files == ("out/a", "out/b")
    assert archive.expires_at is not None
    assert before + timedelta(seconds=3600) <= archive.expires_at <= utcnow() + timedelta(hours=1)
    assert (dotenv.kind, dotenv.expires_at, dotenv.files) == ("dotenv", None, ())


def test_failed_job_keeps_its_artifacts(rig: Rig) -> None:
    b = rig.start(TWO)
    d = rig.blobs.put(b"logs")
    rig.run(b, "compile", exit_code=1, artifacts=(artifact("compile", d, 4),))
    assert [a.digest for a in rig.job(b, "compile").artifacts] == [d]


# --- the log's tail, sent with the report (protocol 3) ----------------------------------


def test_the_output_a_report_carries_is_stored_with_it_once(rig: Rig) -> None:
    b = rig.start(TWO)
    job = rig.claim(b, "compile")
    assert rig.log(job.id, 1, "one\n")
    done = rig.coord.finish(job.id, 1, JobResult(exit_code=0), text="two\n", offset=4)
    assert done.status == JobStatus.SUCCESS
    # its answer was lost: the worker sends the same report again, the tail is not doubled
    rig.coord.finish(job.id, 1, JobResult(exit_code=0), text="two\n", offset=4)
    assert rig.store.read_log(job.id, 1) == "one\ntwo\n"
    assert rig.job(b, "unit").status == JobStatus.PENDING


def test_a_retried_attempt_keeps_its_last_output_and_a_stale_one_adds_none(rig: Rig) -> None:
    b = rig.start("job: {script: [x], retry: 1}")
    job = rig.claim(b, "job")
    after = rig.coord.finish(job.id, 1, JobResult(exit_code=2), text="boom\n", offset=0)
    assert (after.status, after.attempt) == (JobStatus.PENDING, 2)
    assert rig.store.read_log(job.id, 1) == "boom\n"
    rig.coord.finish(job.id, 1, JobResult(exit_code=2), text="late\n", offset=5)
    assert rig.store.read_log(job.id, 2) == "" and rig.store.read_log(job.id, 1) == "boom\n"
