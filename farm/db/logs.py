"""The store's job logs: chunks appended per attempt under a cap, read by cursor.

A log request from a worker is also its attempt's heartbeat; both are written in one
transaction (:meth:`LogsMixin.beat_and_log`).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, insert, select
from sqlalchemy.orm import Session, sessionmaker

from farm.db.rows import JOBS, update_job, values_of
from farm.db.tables import LogChunkRow
from farm.domain.logs import Tail, fit_chunk
from farm.domain.statuses import JobStatus

LOG_CHUNKS = cast(Table, LogChunkRow.__table__)
# Plain statements, not ORM rows: loading a job row parses its spec (JSON), and these
# run once or twice per job (a finish's tail, every log request).
_LOCKED = (
    select(JOBS.c.status, JOBS.c.attempt, JOBS.c.log_bytes)
    .where(JOBS.c.id == bindparam("job_id"))
    .with_for_update()
)
_INSERT_CHUNK = insert(LOG_CHUNKS)  # its columns: the parameters given


def append_tail(s: Session, job_id: int, attempt: int, log_bytes: int, tail: Tail) -> None:
    """Store a finish report's ``tail`` in the transaction that records the finish, which
    read the attempt's ``log_bytes`` as it took the job row."""
    if tail.data:
        _append(s, job_id, attempt, log_bytes, tail.data, tail.cap, tail.offset)


def _append(
    s: Session,
    job_id: int,
    attempt: int,
    log_bytes: int,
    data: str,
    cap: int,
    offset: int | None,
    **also: object,
) -> bool:
    """Add ``data`` to the log of ``attempt`` (``log_bytes`` stored so far) under the cap,
    writing ``also`` to the job row with it; False once the log is full."""
    fitted = fit_chunk(log_bytes, data, cap, offset)
    if fitted is not None:
        text, log_bytes = fitted
        also = {**also, "log_bytes": log_bytes}
        s.execute(_INSERT_CHUNK, {"job_id": job_id, "attempt": attempt, "data": text})
    _set(s, job_id, also)
    return log_bytes < cap


def _set(s: Session, job_id: int, values: Mapping[str, object]) -> None:
    """Write ``values`` to the job's row, if there are any."""
    if values:
        names, params = values_of(values)
        s.execute(update_job(names), {**params, "w_id": job_id})


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
            row = s.execute(_LOCKED, {"job_id": job_id}).first()
            if row is None or row.attempt != attempt:
                return False, not data
            alive = row.status == JobStatus.RUNNING
            beat = {"heartbeat_at": at} if alive else {}
            if not data:
                _set(s, job_id, beat)
                return alive, True
            return alive, _append(s, job_id, attempt, row.log_bytes, data, cap, offset, **beat)

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
