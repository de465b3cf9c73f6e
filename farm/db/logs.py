"""The store's job logs: chunks appended per attempt under a cap, read by cursor.

A log request from a worker is also its attempt's heartbeat; both are written in one
transaction (:meth:`LogsMixin.beat_and_log`).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from farm.db.tables import JobRow, LogChunkRow
from farm.domain.logs import Tail, fit_chunk
from farm.domain.statuses import JobStatus


def append_tail(s: Session, job_id: int, tail: Tail) -> None:
    """Store a finish report's ``tail`` in the transaction that records the finish (the
    job row is locked by then: the finish's update took it)."""
    row = s.get(JobRow, job_id, with_for_update=True)
    if row is not None and tail.data:
        _append(s, row, tail.data, tail.cap, tail.offset)


def _append(s: Session, row: JobRow, data: str, cap: int, offset: int | None) -> bool:
    """Add ``data`` to the log of ``row``'s attempt under the cap; False once it is full."""
    fitted = fit_chunk(row.log_bytes, data, cap, offset)
    if fitted is not None:
        text, row.log_bytes = fitted
        s.add(LogChunkRow(job_id=row.id, attempt=row.attempt, data=text))
    return row.log_bytes < cap


class LogsMixin:
    """Log methods of :class:`farm.db.repository.Store`."""

    _sessions: sessionmaker[Session]  # provided by Store

    def _tx(self) -> AbstractContextManager[Session]:  # provided by Store
        raise NotImplementedError

    def beat_and_log(
        self, job_id: int, attempt: int, at: datetime, data: str, cap: int, offset: int | None
    ) -> tuple[bool, bool]:
        """A worker's log request in one transaction: the heartbeat of a running
        ``attempt`` (alive?), then ``data`` appended if any (accepted?: farm.domain.logs: cap,
        marker, resent bytes; False once the log is full)."""
        with self._tx() as s:
            row = s.get(JobRow, job_id, with_for_update=True)
            if row is None or row.attempt != attempt:
                return False, not data
            alive = row.status == JobStatus.RUNNING
            if alive:
                row.heartbeat_at = at
            return alive, _append(s, row, data, cap, offset) if data else True

    def read_log(self, job_id: int, attempt: int, after: int = 0) -> tuple[str, int]:
        """Log text of ``attempt`` written after chunk id ``after``; returns (text, last id)."""
        with self._sessions() as s:
            rows = s.execute(
                select(LogChunkRow.id, LogChunkRow.data)
                .where(
                    LogChunkRow.job_id == job_id,
                    LogChunkRow.attempt == attempt,
                    LogChunkRow.id > after,
                )
                .order_by(LogChunkRow.id)
            ).all()
            if not rows:
                return "", after
            return "".join(r.data for r in rows), rows[-1].id
