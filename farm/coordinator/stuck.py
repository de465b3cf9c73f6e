"""Stuck jobs: pending, and no live worker consumes their queue (GitLab's "stuck").

Called from every watchdog pass. Workers send heartbeats with the queues they consume
(:mod:`farm.domain.workers`); a pending job queued more than ``FARM_STUCK_AFTER``
seconds ago on a queue no worker seen within ``FARM_WORKER_TIMEOUT`` serves gets a
``stuck_reason`` (``stuck: no worker serves tags [gpu]``), shown in the job and build
documents. Its message stays queued, so it starts as soon as such a worker appears; the
next pass clears the mark. Two API processes marking at once write the same thing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from farm.domain.clock import utcnow
from farm.domain.workers import stuck_reason
from farm.settings import Settings

log = logging.getLogger("farm.coordinator")


@runtime_checkable
class WorkerDirectory(Protocol):
    """What the stuck pass needs of the store (``farm.db.workers.WorkersMixin``)."""

    def live_queues(self, since: datetime) -> set[str]: ...

    def pending_queues(self) -> set[str]: ...

    def mark_stuck(self, queue: str, queued_before: datetime, reason: str) -> int: ...

    def clear_stuck(self, served: Iterable[str]) -> int: ...


def mark_stuck(store: object, settings: Settings, now: datetime | None = None) -> int:
    """One pass: clear the marks of served queues, mark unserved ones. Returns how many
    jobs were newly marked. A store without a worker directory is left alone."""
    if not isinstance(store, WorkerDirectory):
        return 0
    now = now or utcnow()
    try:
        live = store.live_queues(now - timedelta(seconds=settings.worker_timeout))
        store.clear_stuck(live)
        before = now - timedelta(seconds=settings.stuck_after)
        marked = 0
        for queue in sorted(store.pending_queues() - live):
            marked += store.mark_stuck(queue, before, stuck_reason(queue))
        if marked:
            log.warning("%d pending job(s) are stuck: no live worker serves their queue", marked)
        return marked
    except Exception as exc:  # the next pass tries again
        log.error("stuck pass failed: %s", exc)
        return 0
