"""What workers report about their attempts: claims, logs (heartbeats) and finishes.

The report methods of :class:`farm.coordinator.service.Coordinator`, which holds the
state they use (declared in :mod:`farm.coordinator.parts`). A claim is one compare-and-set of
a pending attempt; a log request is the attempt's heartbeat; a finish records the
attempt's end, its artifacts and the last of its output in one transaction, retries it
per ``retry:``, and advances the build. Every report is idempotent by attempt: a stale
or repeated one changes nothing but what its first copy could not complete.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from farm.coordinator.parts import CoordinatorParts
from farm.coordinator.timeline import at_report
from farm.domain import state
from farm.domain.clock import utcnow
from farm.domain.logs import Tail
from farm.domain.messages import ArtifactReport
from farm.domain.records import BuildRecord, JobRecord
from farm.domain.statuses import FINAL_BUILD, FINAL_JOB, BuildStatus, FailureReason, JobStatus
from farm.errors import UploadError

log = logging.getLogger("farm.coordinator")


@dataclass
class Advances:
    """What a batch of finish reports leaves to advance once, after the batch: each
    build (as read for its first report) and each finish's timeline marks."""

    builds: dict[int, BuildRecord] = field(default_factory=dict)
    marks: list[tuple[int, int, int, dict[str, float]]] = field(default_factory=list)


@dataclass(frozen=True)
class JobResult:
    """What a worker reports when an attempt ends."""

    exit_code: int | None
    reason: str | None = None  # None, "timeout", "canceled", "oom", "image_not_found", ...
    message: str = ""
    artifacts: tuple[ArtifactReport, ...] = ()
    coverage: float | None = None
    tests: dict[str, Any] | None = None  # a messages.TestReport, from reports: junit
    timeline: Mapping[str, float] | None = None  # the worker's marks (domain/timeline.py)

    @property
    def succeeded(self) -> bool:
        """A clean exit 0."""
        return self.exit_code == 0 and self.reason is None


class ReportsMixin(CoordinatorParts):
    """The worker-report methods of :class:`farm.coordinator.service.Coordinator`."""

    def claim(
        self,
        job_id: int,
        attempt: int,
        worker: str,
        holder: tuple[int | None, str | None] = (None, None),
    ) -> JobRecord | None:
        """Take ``attempt`` of a job for ``worker``; None if it is stale or already taken.

        ``holder``: the claiming worker token's id and the hash of the job token handed
        out with this claim; only a report carrying both is taken for the attempt.
        """
        now = utcnow()
        job = self.store.claim_job(
            job_id,
            attempt,
            status=JobStatus.RUNNING,
            worker=worker,
            claimed_by_token=holder[0],
            job_token_hash=holder[1],
            started_at=now,
            heartbeat_at=now,
            finished_at=None,
            exit_code=None,
            reason=None,
        )
        if job is None:
            return None
        # The first claim makes the build "running"; a CAS, not a reload of the whole build.
        # A build never goes back to pending: once this process saw it leave, later
        # claims skip the write.
        if job.build_id not in self._started:
            if self.store.cas_build(
                job.build_id, [BuildStatus.PENDING], status=BuildStatus.RUNNING, started_at=now
            ):
                self.build_changed(job.build_id)
            with self._lock:
                if len(self._started) > 100_000:
                    self._started.clear()
                self._started.add(job.build_id)
        return job

    def beat_and_log(
        self, job_id: int, attempt: int, text: str, offset: int | None = None
    ) -> tuple[bool, bool]:
        """A worker's log request, which is also its attempt's heartbeat, in one store
        transaction: (alive: the attempt still runs, so the worker goes on; accepted: the
        text was stored, False once the log is full or for a stale attempt)."""
        cap = self.settings.log_max_bytes
        return self.store.beat_and_log(job_id, attempt, utcnow(), text, cap, offset)

    def finish(
        self,
        job_id: int,
        attempt: int,
        result: JobResult,
        text: str = "",
        offset: int | None = None,
        job: JobRecord | None = None,
        batch: Advances | None = None,
    ) -> JobRecord:
        """An attempt ended: record it, retry per ``retry:``, advance the build.

        ``text``: the attempt's last output, sent with the report (stored first, as a log
        request's ``text`` at ``offset`` would be); ``job``: the job as the caller just
        read it (its artifacts aside), to spare a read; ``batch``: one of several reports
        sent together, whose builds :meth:`advance_batch` advances once afterwards (each
        advance reads what changed since the last: one per report repeats that work).
        """
        job = job or self.store.get_job(job_id)
        tail = Tail(text, offset, self.settings.log_max_bytes) if text else None
        if job.attempt != attempt or job.status != JobStatus.RUNNING:
            self._store_tail(job_id, attempt, tail)  # a resent report's: stored once
            if job.attempt == attempt and job.status in FINAL_JOB:
                # The same report again (its answer was lost, or settling the build failed
                # after the job was recorded): complete what the first one could not.
                self._advance(job.build_id)
            return job  # a stale or duplicate report changes nothing else
        for art in result.artifacts:
            if not self.blobs.has(art.digest):
                self._store_tail(job_id, attempt, tail)
                raise UploadError(f"artifact {art.name} ({art.digest}) was not uploaded")
        spec = job.spec
        if not result.succeeded and state.should_retry(
            attempt=attempt,
            max_retries=spec.retry.max,
            when=spec.retry.when,
            exit_codes=spec.retry.exit_codes,
            reason=result.reason,
            exit_code=result.exit_code,
        ):
            self._store_tail(job_id, attempt, tail)
            if self.store.cas_job(
                job_id,
                [JobStatus.RUNNING],
                expect_attempt=attempt,
                status=JobStatus.PENDING,
                **reset_attempt(attempt + 1),
            ):
                self._publish([(self.store.get_job(job_id), None)])
            return self.store.get_job(job_id)
        status = JobStatus.SUCCESS if result.succeeded else JobStatus.FAILED
        reason = result.reason or (None if result.succeeded else FailureReason.SCRIPT_FAILURE)
        marks = at_report(job, result.timeline, time.time())
        now = utcnow()
        # The job's status and its artifacts in one transaction: a concurrent advance
        # that sees the job succeed may dispatch its dependents at once, and their
        # claims must find its artifacts.
        artifacts = [
            {
                "name": art.name,
                "kind": art.kind,
                "digest": art.digest,
                "size": art.size,
                "files": list(art.files) or None,
                "expires_at": now + timedelta(seconds=art.expire_in) if art.expire_in else None,
            }
            for art in result.artifacts
        ]
        if not self.store.finish_attempt(
            job_id,
            attempt,
            artifacts,
            tail,
            status=status,
            exit_code=result.exit_code,
            reason=reason,
            finished_at=now,
            coverage=result.coverage,
            test_report=result.tests,
            timeline=dict(marks),  # completed below, written later: not shared
        ):
            self._store_tail(job_id, attempt, tail)  # raced: the job moved meanwhile
            return self.store.get_job(job_id)
        self._release(job)
        build = batch.builds.get(job.build_id) if batch is not None else None
        if build is None:  # read once, for both
            build = self.store.get_build(job.build_id, with_jobs=False)
        if result.succeeded:
            self._remember(build, job)
        if batch is not None:
            batch.builds.setdefault(job.build_id, build)
            batch.marks.append((job.build_id, job_id, attempt, marks))
        else:
            settled = self._advance(job.build_id, build)
            self._dispatched([(job_id, attempt, marks)], settled in FINAL_BUILD)
        # The record as this finish left it (its artifacts aside): no read back.
        return dataclasses.replace(
            job, status=status, exit_code=result.exit_code, reason=reason, finished_at=now
        )

    def advance_batch(self, batch: Advances) -> None:
        """Advance each build of a batch of finish reports once (see :meth:`finish`)."""
        settled = {build_id: self._advance(build_id, b) for build_id, b in batch.builds.items()}
        ended = any(status in FINAL_BUILD for status in settled.values())
        self._dispatched([(job_id, attempt, m) for _, job_id, attempt, m in batch.marks], ended)

    def _dispatched(self, done: list[tuple[int, int, dict[str, float]]], ended: bool) -> None:
        """Mark finishes whose advance has sent what they made ready (``next_dispatched``).

        Kept and written with others' (the watchdog writes what waits, each second); at
        once when a build ended, so its document is whole.
        """
        now = time.time()
        full = False
        for job_id, attempt, marks in done:
            marks["next_dispatched"] = now
            full = self._marks.add(job_id, attempt, marks) or full
        if full or ended:
            self.flush_marks()

    def flush_marks(self) -> None:
        """Write the timelines the finishes of this process completed meanwhile."""
        items = self._marks.take()
        if items:
            self.store.set_timelines(items)

    def _store_tail(self, job_id: int, attempt: int, tail: Tail | None) -> None:
        """Store a report's log tail on its own, where the finish does not store it."""
        if tail is not None:
            self.beat_and_log(job_id, attempt, tail.data, tail.offset)

    def _remember(self, build: BuildRecord, job: JobRecord) -> None:
        """Remember a job that ran and succeeded in the result cache (result_cache.py)."""
        if self.results is None:
            return
        try:
            self.results.remember(build, job, self._shape(job.build_id))
        except Exception:
            log.exception("job %s: could not remember its result", job.id)

    def _release(self, job: JobRecord) -> None:
        """A job reached a final status: free its resource group, wake who waits on it."""
        if job.spec.resource_group:
            self.groups.release(job.spec.resource_group, job.id, self._advance)


def reset_attempt(attempt: int) -> dict[str, Any]:
    """The job columns that start ``attempt`` afresh (a retry, a lost worker's job)."""
    return {
        "attempt": attempt,
        "worker": None,
        "started_at": None,
        "heartbeat_at": None,
        "exit_code": None,
        "reason": None,
        "finished_at": None,
        "log_bytes": 0,
        "queued_at": None,  # the new attempt is in the outbox until its message is sent
        "queued_epoch": None,
        "due_at": None,  # a retry starts at once
        "claimed_by_token": None,  # the next claim binds the new attempt to its worker
        "job_token_hash": None,
    }
