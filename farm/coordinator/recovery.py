"""Recovery: attempts whose worker went silent, and the coordinator's own restart.

The recovery methods of :class:`farm.coordinator.service.Coordinator`, which holds the
state they use (declared in :mod:`farm.coordinator.parts`). The watchdog pass retries (or
fails, after ``FARM_MAX_LOST_RETRIES``) a running attempt whose lease ran out, then runs
the dispatch outbox and marks jobs no live worker serves as stuck. Every change is a
compare-and-set on (job, attempt, status): two API processes' passes retry a job once.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from farm.coordinator.parts import CoordinatorParts
from farm.coordinator.reports import reset_attempt
from farm.coordinator.stuck import mark_stuck
from farm.domain.clock import utcnow
from farm.domain.statuses import FailureReason, JobStatus
from farm.errors import NotFound

log = logging.getLogger("farm.coordinator")


class RecoveryMixin(CoordinatorParts):
    """The watchdog pass and restart recovery of
    :class:`farm.coordinator.service.Coordinator`."""

    def watchdog(self) -> list[int]:
        """One watchdog pass: retry (or fail) running attempts whose worker stopped sending
        heartbeats, then the outbox (:meth:`sweep`). Returns the attempts' job ids."""
        touched = self._lost_attempts()
        try:
            self.sweep()
        except Exception as exc:  # the database or the broker: the next pass tries again
            log.error("outbox pass failed: %s", exc)
        mark_stuck(self.store, self.settings)  # issue 10: farm/coordinator/stuck.py
        return touched

    def _lost_attempts(self) -> list[int]:
        now = utcnow()
        cutoff = now - timedelta(seconds=self.settings.job_lease_seconds)
        touched: list[int] = []
        for job in self.store.jobs_with_status([JobStatus.RUNNING]):
            beat = job.heartbeat_at or job.started_at
            # Silence while this process was not running does not count against a lease.
            if beat is None or max(beat, self.up_since) >= cutoff:
                continue
            if job.lost_count < self.settings.max_lost_retries:
                fields = reset_attempt(job.attempt + 1)
                fields["lost_count"] = job.lost_count + 1
                if self.store.cas_job(
                    job.id,
                    [JobStatus.RUNNING],
                    expect_attempt=job.attempt,
                    status=JobStatus.PENDING,
                    **fields,
                ):
                    log.warning("job %s lost its worker %s; retrying", job.id, job.worker)
                    self._publish([(self.store.get_job(job.id), None)])
            elif self.store.cas_job(
                job.id,
                [JobStatus.RUNNING],
                expect_attempt=job.attempt,
                status=JobStatus.FAILED,
                reason=FailureReason.WORKER_LOST,
                finished_at=now,
            ):
                self._release(job)
                self._advance(job.build_id)
            touched.append(job.id)
        return touched

    def recover(self) -> int:
        """After a restart: free stuck groups, send pending jobs whose message may be
        missing (every one, without a broker probe), advance every unfinished build.
        Returns how many messages were sent."""
        self.groups.recover()
        count = self.sweep(restart=True)
        for build_id in self.store.active_build_ids():
            try:
                self._advance(build_id)
            except Exception:  # one broken build must not keep the others waiting
                log.exception("advancing build %s after a restart failed", build_id)
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
