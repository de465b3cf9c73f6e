"""The coordinator's side of a job attempt's timeline (farm/domain/timeline.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

from farm.domain import timeline
from farm.domain.records import JobRecord


def at_report(
    job: JobRecord, worker: Mapping[str, float] | None, reported: float
) -> dict[str, float]:
    """The timeline stored with an attempt's result: the worker's marks, and when the
    message was queued, claimed and the report arrived."""
    return timeline.merge(
        worker,
        queued=job.queued_at.timestamp() if job.queued_at else None,
        claimed=job.started_at.timestamp() if job.started_at else None,
        reported=reported,
    )


class MarkBuffer:
    """Timelines completed after their job's finish (the ``next_dispatched`` mark), kept
    to be written many per transaction instead of one write transaction per finished job
    (issue 10). Thread-safe; :meth:`take` empties it."""

    def __init__(self, batch: int = 64, delay: float = 1.0) -> None:
        self.batch = batch  # write once this many wait…
        self.delay = delay  # …or once the oldest waited this many seconds
        self._items: list[tuple[int, int, dict[str, float]]] = []
        self._since = 0.0
        self._lock = threading.Lock()

    def add(self, job_id: int, attempt: int, marks: dict[str, float]) -> bool:
        """Keep one (job, attempt)'s whole timeline; True when the buffer is due."""
        now = time.monotonic()
        with self._lock:
            if not self._items:
                self._since = now
            self._items.append((job_id, attempt, marks))
            return len(self._items) >= self.batch or now - self._since >= self.delay

    def take(self) -> list[tuple[int, int, dict[str, float]]]:
        """Everything kept so far, oldest first; the buffer is empty after."""
        with self._lock:
            items, self._items = self._items, []
        return items
