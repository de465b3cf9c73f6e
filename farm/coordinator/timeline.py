"""The coordinator's side of a job attempt's timeline (farm/domain/timeline.py)."""

from __future__ import annotations

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
