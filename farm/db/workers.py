"""The store's worker directory: heartbeats, live queues, and stuck pending jobs.

One row per worker name, overwritten by each heartbeat (an upsert: the insert races
another API process at most once, and then updates). Stuck marks are plain updates
guarded by the job's status, so two watchdogs marking at once agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from farm.db.session import aware
from farm.db.tables import ArtifactRow, BuildRow, JobRow, RolloutEventRow, WorkerRow
from farm.domain.statuses import JobStatus
from farm.domain.workers import WorkerHeartbeat, WorkerInfo


def _info(row: WorkerRow, alive_since: datetime | None) -> WorkerInfo:
    last = aware(row.last_seen)
    assert last is not None
    started = aware(row.started_at) or last
    return WorkerInfo(
        name=row.name,
        host=row.host,
        tags=list(row.tags or ()),
        queues=list(row.queues or ()),
        slots=row.slots,
        running=list(row.running or ()),
        started_at=started,
        last_seen=last,
        alive=alive_since is None or last >= alive_since,
    )


class WorkersMixin:
    """Worker methods of :class:`farm.db.repository.Store` (kept apart, like caches)."""

    def _tx(self) -> AbstractContextManager[Session]:  # provided by Store
        raise NotImplementedError

    def record_heartbeat(self, beat: WorkerHeartbeat, now: datetime) -> None:
        """Store a worker's heartbeat (its row is created on the first one)."""
        values = {
            "host": beat.host,
            "tags": list(beat.tags),
            "queues": list(beat.queues),
            "slots": beat.slots,
            "running": list(beat.running),
            "last_seen": now,
        }
        for _ in range(2):  # insert lost a race with another API process: update
            with self._tx() as s:
                done = s.execute(
                    update(WorkerRow).where(WorkerRow.name == beat.name).values(**values)
                )
                if done.rowcount:  # type: ignore[attr-defined]
                    return
            try:
                with self._tx() as s:
                    s.add(WorkerRow(name=beat.name, started_at=now, **values))
                return
            except IntegrityError:
                continue

    def list_workers(self, alive_since: datetime | None = None) -> list[WorkerInfo]:
        """Every known worker by name; ``alive`` tells whether it was seen since then."""
        with self._tx() as s:
            rows = s.scalars(select(WorkerRow).order_by(WorkerRow.name)).all()
            return [_info(r, alive_since) for r in rows]

    def forget_workers(self, seen_before: datetime) -> int:
        """Drop the rows of workers silent since ``seen_before``."""
        with self._tx() as s:
            res = s.execute(delete(WorkerRow).where(WorkerRow.last_seen < seen_before))
            return int(res.rowcount)  # type: ignore[attr-defined]

    def live_queues(self, since: datetime) -> set[str]:
        """Every queue a worker seen since ``since`` consumes."""
        with self._tx() as s:
            rows = s.scalars(select(WorkerRow.queues).where(WorkerRow.last_seen >= since))
            return {q for qs in rows for q in (qs or ())}

    def pending_queues(self) -> set[str]:
        """The queues of pending jobs."""
        with self._tx() as s:
            rows = s.scalars(
                select(JobRow.queue).where(JobRow.status == JobStatus.PENDING).distinct()
            )
            return set(rows)

    def mark_stuck(self, queue: str, queued_before: datetime, reason: str) -> int:
        """Set ``reason`` on the pending jobs of ``queue`` queued before then (not yet set)."""
        with self._tx() as s:
            res = s.execute(
                update(JobRow)
                .where(
                    JobRow.status == JobStatus.PENDING,
                    JobRow.queue == queue,
                    JobRow.stuck_reason.is_(None),
                    JobRow.queued_at < queued_before,
                )
                .values(stuck_reason=reason)
            )
            return int(res.rowcount)  # type: ignore[attr-defined]

    def clear_stuck(self, served: Iterable[str]) -> int:
        """Clear the mark of pending jobs whose queue is served now (a job that left
        ``pending`` keeps its stale mark, unshown: the status index keeps this cheap)."""
        queues = list(served)
        if not queues:
            return 0
        with self._tx() as s:
            res = s.execute(
                update(JobRow)
                .where(
                    JobRow.status == JobStatus.PENDING,
                    JobRow.stuck_reason.is_not(None),
                    JobRow.queue.in_(queues),
                )
                .values(stuck_reason=None)
            )
            return int(res.rowcount)  # type: ignore[attr-defined]

    # --- what /metrics reads on each scrape (farm/api/metrics.py) ----------------------

    def build_counts(self) -> dict[str, int]:
        """How many builds are in each status."""
        with self._tx() as s:
            rows = s.execute(select(BuildRow.status, func.count()).group_by(BuildRow.status))
            return {str(r[0]): int(r[1]) for r in rows}

    def artifact_bytes(self) -> int:
        """Bytes of the distinct blobs artifacts refer to (the registry's referenced size)."""
        with self._tx() as s:
            blobs = select(ArtifactRow.digest, func.max(ArtifactRow.size).label("size")).group_by(
                ArtifactRow.digest
            )
            sub = blobs.subquery()
            return int(s.scalar(select(func.coalesce(func.sum(sub.c.size), 0))) or 0)

    def rollout_event_counts(self) -> dict[str, int]:
        """How many rollout events of each kind were recorded (steps, pauses, rollbacks)."""
        with self._tx() as s:
            rows = s.execute(
                select(RolloutEventRow.event, func.count()).group_by(RolloutEventRow.event)
            )
            return {str(r[0]): int(r[1]) for r in rows}
