"""The store's writes of job state: claims, finishes, compare-and-sets, outbox and
timeline marks.

Every write that changes what deciding reads (status, attempt, exit code, reason)
takes the build's next change number in the same transaction
(:mod:`farm.db.job_revs`), so a coordinator catching up misses none of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, bindparam, update
from sqlalchemy.orm import Session

from farm.db import job_revs
from farm.db.logs import append_tail
from farm.db.rows import JOBS, chunks, job_record, update_job, values_of
from farm.db.tables import ArtifactRow
from farm.domain.clock import utcnow
from farm.domain.logs import Tail
from farm.domain.records import JobRecord
from farm.domain.statuses import JobStatus


class JobWritesMixin:
    """Job-state write methods of :class:`farm.db.repository.Store`."""

    def _tx(self) -> AbstractContextManager[Session]:  # provided by Store
        raise NotImplementedError

    def cas_job(
        self,
        job_id: int,
        from_statuses: Iterable[str],
        expect_attempt: int | None = None,
        **fields: Any,
    ) -> bool:
        """Compare-and-set on a job: applies ``fields`` only from the given state/attempt."""
        with self._tx() as s:
            # Core, not ORM: an ORM update evaluates its criteria against the session's
            # objects first, a cost paid on every claim, heartbeat and finish.
            c = JOBS.c
            q = update(JOBS).where(c.id == job_id, c.status.in_(list(from_statuses)))
            if expect_attempt is not None:
                q = q.where(c.attempt == expect_attempt)
            if job_revs.touches_state(fields):
                stamped = job_revs.stamp(s, job_id)
                if stamped is None:
                    return False
                fields = {**fields, "rev": stamped[1]}
            res = s.execute(q.values(**fields))
            return bool(res.rowcount)  # type: ignore[attr-defined]

    def claim_job(self, job_id: int, attempt: int, **fields: Any) -> JobRecord | None:
        """Compare-and-set a pending ``attempt`` to ``fields`` (its claim) and return the
        job as it is then, its artifacts aside (a pending job has none): one transaction,
        no read back. None if the attempt was not pending."""
        names, params = values_of({**fields, "rev": 0})
        q = update_job(names, (JobStatus.PENDING,), returning="job")
        with self._tx() as s:
            stamped = job_revs.stamp(s, job_id)
            if stamped is None:
                return None
            params.update(w_id=job_id, w_attempt=attempt, v_rev=stamped[1])
            row = s.execute(q, params).first()
            return None if row is None else job_record(row)

    def cas_jobs(
        self, job_ids: Iterable[int], from_statuses: Iterable[str], **fields: Any
    ) -> list[int]:
        """Bulk compare-and-set: ``fields`` on each of ``job_ids`` whose status is one of
        ``from_statuses``; returns the ids that changed (``UPDATE … RETURNING``)."""
        ids = list(job_ids)
        statuses = list(from_statuses)
        done: list[int] = []
        if not ids:
            return done
        with self._tx() as s:
            builds: list[int | None] = [None]
            if job_revs.touches_state(fields):
                builds = list(job_revs.builds_of(s, ids))
            for build_id in builds:
                values = dict(fields)
                where: list[ColumnElement[bool]] = [JOBS.c.status.in_(statuses)]
                if build_id is not None:
                    values["rev"] = job_revs.bump(s, build_id)
                    where.append(JOBS.c.build_id == build_id)
                for part in chunks(ids):
                    q = (
                        update(JOBS)
                        .where(JOBS.c.id.in_(list(part)), *where)
                        .values(**values)
                        .returning(JOBS.c.id)
                    )
                    done.extend(s.execute(q).scalars())
        return done

    def cas_jobs_of_build(
        self, build_id: int, from_statuses: Iterable[str], **fields: Any
    ) -> list[int]:
        """One statement: ``fields`` on every job of the build whose status is one of
        ``from_statuses`` (a cancel); returns the ids that changed."""
        with self._tx() as s:
            if job_revs.touches_state(fields):
                fields = {**fields, "rev": job_revs.bump(s, build_id)}
            q = (
                update(JOBS)
                .where(JOBS.c.build_id == build_id, JOBS.c.status.in_(list(from_statuses)))
                .values(**fields)
                .returning(JOBS.c.id)
            )
            return list(s.execute(q).scalars())

    def mark_queued(
        self, attempts: Iterable[tuple[int, int]], at: datetime, epoch: str | None
    ) -> None:
        """Record that the broker took the message of each (job, attempt) still in that
        attempt, whatever its status: a worker may have claimed it already (the timeline's
        ``queued`` mark); the outbox only ever reads pending jobs."""
        params = [{"jid": j, "att": a} for j, a in attempts]
        if not params:
            return
        q = (
            update(JOBS)
            .where(
                JOBS.c.id == bindparam("jid"),
                JOBS.c.attempt == bindparam("att"),
            )
            .values(queued_at=at, queued_epoch=epoch)
        )
        with self._tx() as s:
            s.connection().execute(q, params)

    def set_timelines(self, items: Iterable[tuple[int, int, dict[str, float]]]) -> None:
        """Store each (job, attempt, timeline) while the job is still at that attempt, in
        one transaction (``Coordinator.flush_marks``)."""
        params = [{"jid": j, "att": a, "tl": tl} for j, a, tl in items]
        if not params:
            return
        q = (
            update(JOBS)
            .where(JOBS.c.id == bindparam("jid"), JOBS.c.attempt == bindparam("att"))
            .values(timeline=bindparam("tl"))
        )
        with self._tx() as s:
            s.connection().execute(q, params)

    def finish_attempt(
        self,
        job_id: int,
        attempt: int,
        artifacts: Sequence[Mapping[str, Any]],
        tail: Tail | None = None,
        **fields: Any,
    ) -> bool:
        """The end of a running attempt, its artifacts and its log's ``tail``, in one
        transaction."""
        names, params = values_of({**fields, "rev": 0})
        q = update_job(names, (JobStatus.RUNNING,), returning="log_bytes")
        with self._tx() as s:
            stamped = job_revs.stamp(s, job_id)
            if stamped is None:
                return False
            build_id, rev = stamped
            params.update(w_id=job_id, w_attempt=attempt, v_rev=rev)
            logged = s.execute(q, params).scalar()
            if logged is None:
                return False
            if tail is not None:
                append_tail(s, job_id, attempt, logged, tail)
            now = utcnow()
            for art in artifacts:
                s.add(ArtifactRow(build_id=build_id, job_id=job_id, created_at=now, **art))
            return True
