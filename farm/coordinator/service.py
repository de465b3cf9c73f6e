"""The coordinator: applies the pure state logic to stored builds and jobs.

It talks to the world only through narrow interfaces — the :class:`Store`, a
:class:`Dispatcher` and a blob store — so the decisions stay in ``state`` and
every change is a compare-and-set that is safe to attempt twice.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from farm.coordinator.deliverable import deliverable_manifest
from farm.coordinator.groups import ResourceGroups
from farm.coordinator.ports import Blobs, Store
from farm.coordinator.ports import Dispatcher as Dispatcher  # re-exported: callers import it here
from farm.domain import state
from farm.domain.clock import utcnow
from farm.domain.messages import ArtifactReport
from farm.domain.records import BuildRecord, JobRecord
from farm.domain.specs import Pipeline
from farm.domain.state import JobNode
from farm.domain.statuses import (
    FINAL_BUILD,
    FINAL_JOB,
    ArtifactKind,
    BuildStatus,
    FailureReason,
    JobStatus,
)
from farm.errors import Conflict, NotFound, UploadError
from farm.settings import Settings

log = logging.getLogger("farm.coordinator")

_WAITING = (JobStatus.CREATED, JobStatus.PENDING, JobStatus.MANUAL)


@dataclass(frozen=True)
class JobResult:
    """What a worker reports when an attempt ends."""

    exit_code: int | None
    reason: str | None = None  # None, "timeout", "canceled", "oom", "image_not_found", ...
    message: str = ""
    artifacts: tuple[ArtifactReport, ...] = ()
    coverage: float | None = None

    @property
    def succeeded(self) -> bool:
        """A clean exit 0."""
        return self.exit_code == 0 and self.reason is None


@dataclass
class Coordinator:
    """Drives builds from job completions (dynamic dispatch, never a static canvas)."""

    store: Store
    blobs: Blobs
    dispatcher: Dispatcher
    settings: Settings
    on_build_finished: list[Callable[[BuildRecord], None]] = field(default_factory=list)

    @property
    def groups(self) -> ResourceGroups:
        """``resource_group`` locks (stateless: all state is in the store)."""
        return ResourceGroups(self.store)

    # --- the DAG ---------------------------------------------------------------------

    @staticmethod
    def pipeline_of(build: BuildRecord) -> Pipeline:
        """The build's pipeline, rebuilt from its stored job specs."""
        return Pipeline(stages=build.stages, jobs=tuple(j.spec for j in build.jobs))

    @staticmethod
    def _nodes(build: BuildRecord) -> dict[str, JobNode]:
        pipeline = Coordinator.pipeline_of(build)
        nodes: dict[str, JobNode] = {}
        for job in build.jobs:
            spec = job.spec
            allowed = spec.allow_failure or (
                job.exit_code is not None and job.exit_code in spec.allow_failure_exit_codes
            )
            nodes[job.name] = JobNode(
                name=job.name,
                status=JobStatus(job.status),
                when=spec.when,
                allow_failure=allowed,
                upstream=pipeline.upstream(spec),
                explicit_needs=spec.needs is not None,
                reason=job.reason,
            )
        return nodes

    def advance(self, build_id: int) -> BuildRecord:
        """Dispatch what became ready, skip what cannot run, settle the build's status."""
        build = self.store.get_build(build_id)
        if build.status in FINAL_BUILD:
            return build
        for _ in range(len(build.jobs) + 1):
            changed = False
            for decision in state.decide(self._nodes(build)):
                job = build.job_named(decision.name)
                assert job is not None
                changed |= self._apply(build, job, decision)
            build = self.store.get_build(build_id)
            if not changed:
                break
        return self._settle(build)

    def _apply(self, build: BuildRecord, job: JobRecord, decision: state.Decision) -> bool:
        created = [JobStatus.CREATED]
        if decision.action == "skip":
            return self.store.cas_job(
                job.id,
                created,
                status=JobStatus.SKIPPED,
                reason=decision.reason,
                finished_at=utcnow(),
            )
        if decision.action == "manual":
            return self.store.cas_job(job.id, created, status=JobStatus.MANUAL)
        group = job.spec.resource_group
        if group and not self.groups.take(group, job.id):
            return False  # waits, still created, until the holder finishes (groups.py)
        if not self.store.cas_job(job.id, created, status=JobStatus.PENDING):
            # Someone else moved it: a concurrent advance that dispatched it keeps the
            # group (same holder id); a job canceled meanwhile must give it back.
            if group and self.store.get_job(job.id).status in FINAL_JOB:
                self._release(job)
            return False
        countdown = float(job.spec.start_in or 0) if decision.action == "delay" else None
        self._dispatch(job, build, countdown)
        return True

    def _dispatch(self, job: JobRecord, build: BuildRecord, countdown: float | None = None) -> None:
        try:
            self.dispatcher.dispatch(job, build, countdown)
        except Exception as exc:  # the broker may be down; recovery re-dispatches pending jobs
            log.error("could not queue job %s (%s): %s", job.id, job.name, exc)

    def _settle(self, build: BuildRecord) -> BuildRecord:
        status = state.build_status(self._nodes(build), build.cancel_requested)
        if status == build.status:
            return build
        now = utcnow()
        if status in FINAL_BUILD:
            if not self.store.cas_build(
                build.id,
                [s for s in BuildStatus if s not in FINAL_BUILD],
                status=status,
                finished_at=now,
            ):
                return self.store.get_build(build.id)
            build = self.store.get_build(build.id)
            if status == BuildStatus.SUCCESS:
                build = self._store_deliverable(build)
            log.info("build %s finished: %s", build.id, status)
            for hook in self.on_build_finished:
                hook(build)
            return build
        fields: dict[str, Any] = {"status": status}
        if status == BuildStatus.RUNNING and build.started_at is None:
            fields["started_at"] = now
        self.store.cas_build(build.id, [build.status], **fields)
        return self.store.get_build(build.id)

    def _store_deliverable(self, build: BuildRecord) -> BuildRecord:
        data = deliverable_manifest(build)
        info = self.blobs.put_stream(iter([data]))
        self.store.update_build(build.id, deliverable_digest=info.digest)
        self.store.add_artifact(
            build_id=build.id,
            job_id=None,
            name="deliverable.json",
            kind=ArtifactKind.DELIVERABLE,
            digest=info.digest,
            size=info.size,
        )
        return self.store.get_build(build.id)

    # --- worker reports --------------------------------------------------------------

    def claim(self, job_id: int, attempt: int, worker: str) -> JobRecord | None:
        """Take ``attempt`` of a job for ``worker``; None if it is stale or already taken."""
        now = utcnow()
        ok = self.store.cas_job(
            job_id,
            [JobStatus.PENDING],
            expect_attempt=attempt,
            status=JobStatus.RUNNING,
            worker=worker,
            started_at=now,
            heartbeat_at=now,
            finished_at=None,
            exit_code=None,
            reason=None,
        )
        if not ok:
            return None
        job = self.store.get_job(job_id)
        # The first claim makes the build "running"; a CAS, not a reload of the whole build.
        self.store.cas_build(
            job.build_id, [BuildStatus.PENDING], status=BuildStatus.RUNNING, started_at=now
        )
        return job

    def heartbeat(self, job_id: int, attempt: int) -> bool:
        """Record that the attempt is alive; False tells the worker to stop it."""
        return self.store.cas_job(
            job_id, [JobStatus.RUNNING], expect_attempt=attempt, heartbeat_at=utcnow()
        )

    def append_log(self, job_id: int, attempt: int, text: str) -> bool:
        """Store output of a running attempt (capped); False once the log is full."""
        return self.store.append_log(job_id, attempt, text, self.settings.log_max_bytes)

    def finish(self, job_id: int, attempt: int, result: JobResult) -> JobRecord:
        """An attempt ended: record it, retry per ``retry:``, advance the build."""
        job = self.store.get_job(job_id)
        if job.attempt != attempt or job.status != JobStatus.RUNNING:
            return job  # a stale or duplicate report changes nothing
        for art in result.artifacts:
            if not self.blobs.has(art.digest):
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
            if self.store.cas_job(
                job_id,
                [JobStatus.RUNNING],
                expect_attempt=attempt,
                status=JobStatus.PENDING,
                **_reset(attempt + 1),
            ):
                build = self.store.get_build(job.build_id)
                self._dispatch(self.store.get_job(job_id), build)
            return self.store.get_job(job_id)
        status = JobStatus.SUCCESS if result.succeeded else JobStatus.FAILED
        reason = result.reason or (None if result.succeeded else FailureReason.SCRIPT_FAILURE)
        if not self.store.cas_job(
            job_id,
            [JobStatus.RUNNING],
            expect_attempt=attempt,
            status=status,
            exit_code=result.exit_code,
            reason=reason,
            finished_at=utcnow(),
            coverage=result.coverage,
        ):
            return self.store.get_job(job_id)
        now = utcnow()
        for art in result.artifacts:
            self.store.add_artifact(
                build_id=job.build_id,
                job_id=job_id,
                name=art.name,
                kind=art.kind,
                digest=art.digest,
                size=art.size,
                files=list(art.files) or None,
                expires_at=now + timedelta(seconds=art.expire_in) if art.expire_in else None,
            )
        self._release(job)
        self.advance(job.build_id)
        return self.store.get_job(job_id)

    def _release(self, job: JobRecord) -> None:
        """A job reached a final status: free its resource group, wake who waits on it."""
        if job.spec.resource_group:
            self.groups.release(job.spec.resource_group, job.id, self.advance)

    # --- people ----------------------------------------------------------------------

    def cancel(self, build_id: int) -> BuildRecord:
        """Cancel a build: waiting jobs never start, running ones are stopped by their worker."""
        build = self.store.get_build(build_id)
        if build.status in FINAL_BUILD:
            raise Conflict(f"build {build_id} has already finished ({build.status})")
        self.store.update_build(build_id, cancel_requested=True)
        for job in build.jobs:
            if job.status in (*_WAITING, JobStatus.RUNNING) and self.store.cas_job(
                job.id,
                [job.status],
                status=JobStatus.CANCELED,
                reason=FailureReason.CANCELED,
                finished_at=utcnow(),
            ):
                self._release(job)
        return self.advance(build_id)

    def play(self, job_id: int) -> JobRecord:
        """Start a manual job."""
        job = self.store.get_job(job_id)
        if job.status != JobStatus.MANUAL:
            raise Conflict(f"job {job_id} is {job.status}, not waiting to be played")
        group = job.spec.resource_group
        if group and not self.groups.take(group, job_id):
            # Simpler than a played-but-waiting state: the person plays it again later.
            holder = self.store.resource_group_holder(group)
            raise Conflict(f"resource group {group!r} is busy (job {holder}); play it later")
        if not self.store.cas_job(job_id, [JobStatus.MANUAL], status=JobStatus.PENDING):
            if group and self.store.get_job(job_id).status in FINAL_JOB:
                self.store.release_resource_group(group, job_id)
            raise Conflict(f"job {job_id} was started by someone else")
        self.store.cas_build(
            job.build_id,
            list(BuildStatus),
            status=BuildStatus.RUNNING,
            finished_at=None,
        )
        build = self.store.get_build(job.build_id)
        self._dispatch(self.store.get_job(job_id), build)
        return self.store.get_job(job_id)

    # --- recovery --------------------------------------------------------------------

    def watchdog(self) -> list[int]:
        """Retry (or fail) running attempts whose worker stopped sending heartbeats."""
        cutoff = utcnow() - timedelta(seconds=self.settings.job_lease_seconds)
        touched: list[int] = []
        for job in self.store.jobs_with_status([JobStatus.RUNNING]):
            beat = job.heartbeat_at or job.started_at
            if beat is None or beat >= cutoff:
                continue
            if job.lost_count < self.settings.max_lost_retries:
                fields = _reset(job.attempt + 1)
                fields["lost_count"] = job.lost_count + 1
                if self.store.cas_job(
                    job.id,
                    [JobStatus.RUNNING],
                    expect_attempt=job.attempt,
                    status=JobStatus.PENDING,
                    **fields,
                ):
                    log.warning("job %s lost its worker %s; retrying", job.id, job.worker)
                    self._dispatch(self.store.get_job(job.id), self.store.get_build(job.build_id))
            elif self.store.cas_job(
                job.id,
                [JobStatus.RUNNING],
                expect_attempt=job.attempt,
                status=JobStatus.FAILED,
                reason=FailureReason.WORKER_LOST,
                finished_at=utcnow(),
            ):
                self._release(job)
                self.advance(job.build_id)
            touched.append(job.id)
        return touched

    def recover(self) -> int:
        """After a restart: re-queue pending jobs (duplicates are refused by claim)."""
        count = 0
        self.groups.recover()
        for job in self.store.jobs_with_status([JobStatus.PENDING]):
            self._dispatch(job, self.store.get_build(job.build_id))
            count += 1
        for build_id in self.store.active_build_ids():
            self.advance(build_id)
        return count

    def live_attempts(self, pairs: list[tuple[int, int]]) -> list[bool]:
        """For each (job id, attempt): is that attempt still running? (for reapers)."""
        out: list[bool] = []
        for job_id, attempt in pairs:
            try:
                job = self.store.get_job(job_id)
            except NotFound:
                out.append(False)
                continue
            out.append(job.status == JobStatus.RUNNING and job.attempt == attempt)
        return out


def _reset(attempt: int) -> dict[str, Any]:
    return {
        "attempt": attempt,
        "worker": None,
        "started_at": None,
        "heartbeat_at": None,
        "exit_code": None,
        "reason": None,
        "finished_at": None,
        "log_bytes": 0,
    }


def digest_text(text: str) -> str:
    """sha256 digest string of a text, as used for pipeline files."""
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
