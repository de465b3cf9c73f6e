"""What people do to builds and jobs: cancel a build, play a manual job, retry.

The operator-action methods of :class:`farm.coordinator.service.Coordinator`, which holds
the state they use (declared in :mod:`farm.coordinator.parts`). Each is a compare-and-set on the
jobs it changes, then an advance of the build, so two people (or two API processes)
acting at once change a job once.
"""

from __future__ import annotations

from typing import Any

from farm.coordinator.parts import CoordinatorParts
from farm.coordinator.reports import reset_attempt
from farm.coordinator.withdraw import withdraw_queued
from farm.domain import retry as retry_rule
from farm.domain.clock import utcnow
from farm.domain.records import BuildRecord, JobRecord
from farm.domain.retry import RetryNode
from farm.domain.statuses import FINAL_BUILD, FINAL_JOB, BuildStatus, FailureReason, JobStatus
from farm.errors import Conflict

_WAITING = (JobStatus.CREATED, JobStatus.PENDING, JobStatus.MANUAL)


class ActionsMixin(CoordinatorParts):
    """Cancel, play and retry, for :class:`farm.coordinator.service.Coordinator`."""

    def cancel(self, build_id: int) -> BuildRecord:
        """Cancel a build: waiting jobs never start, running ones are stopped by their worker.

        One compare-and-set over every waiting and running job of the build; messages
        still queued for them are refused when a worker tries to claim them. Returns the
        build without its jobs (``store.get_build`` or ``job_lines`` reads them).
        """
        build = self.store.get_build(build_id, with_jobs=False)
        if build.status in FINAL_BUILD:
            raise Conflict(f"build {build_id} has already finished ({build.status})")
        self.store.update_build(build_id, cancel_requested=True)
        canceled = self.store.cas_jobs_of_build(
            build_id,
            [*_WAITING, JobStatus.RUNNING],
            status=JobStatus.CANCELED,
            reason=FailureReason.CANCELED,
            finished_at=utcnow(),
        )
        shape = self._shape(build_id)
        for job_id in canceled:
            self._release(shape.job(job_id))
        # Their queued messages go too: on a queue no worker serves they would stay forever.
        withdraw_queued(self.dispatcher, [shape.job(job_id) for job_id in canceled])
        self._advance(build_id)
        return self.store.get_build(build_id, with_jobs=False)

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
        build = self.store.get_build(job.build_id, with_jobs=False)
        fields: dict[str, Any] = {"status": BuildStatus.RUNNING, "finished_at": None}
        if build.started_at is None:  # a build a person starts starts now
            fields["started_at"] = utcnow()
        if self.store.cas_build(job.build_id, list(BuildStatus), **fields):
            self.build_changed(job.build_id)
        self._publish([(self.store.get_job(job_id), None)], build)
        return self.store.get_job(job_id)

    def retry(self, build_id: int, job_id: int | None = None) -> BuildRecord:
        """Run failed/canceled jobs again (one job, or all of the build's): each gets a new
        attempt, the skipped/canceled jobs below them go back to ``created``
        (``domain.retry``), and a finished build runs again. Returns the build."""
        build = self.store.get_build(build_id)
        rank = {name: i for i, name in enumerate(build.stages)}
        nodes = [
            RetryNode(
                j.name,
                j.status,
                rank.get(j.stage, len(rank)),
                None if j.spec.needs is None else tuple(n.job for n in j.spec.needs),
            )
            for j in build.jobs
        ]
        named = {j.name: j for j in build.jobs}
        asked = retry_rule.retryable(nodes)
        if job_id is not None:
            job = next((j for j in build.jobs if j.id == job_id), None)
            if job is None or job.status not in retry_rule.RETRYABLE:
                what = job.status if job is not None else "not in this build"
                raise Conflict(f"job {job_id} is {what}: only failed or canceled jobs retry")
            asked = [job.name]
        plan = retry_rule.plan_retry(nodes, asked)
        reset = 0
        for name in (*plan.retried, *plan.downstream):
            job = named[name]
            # A job that ran keeps that attempt's log: it runs again as the next attempt.
            ran = name in plan.retried or job.started_at is not None
            fields = (
                reset_attempt(job.attempt + 1) if ran else {"reason": None, "finished_at": None}
            )
            reset += self.store.cas_job(
                job.id,
                [job.status],
                expect_attempt=job.attempt,
                status=JobStatus.CREATED,
                test_report=None,
                **fields,
            )
        if not reset:
            raise Conflict(f"build {build_id} has no failed or canceled job to retry")
        self.store.update_build(build_id, cancel_requested=False)
        again = [s for s in BuildStatus if s != BuildStatus.RUNNING]
        if self.store.cas_build(build_id, again, status=BuildStatus.RUNNING, finished_at=None):
            self.build_changed(build_id)
        self._advance(build_id)
        return self.store.get_build(build_id, with_jobs=False)
