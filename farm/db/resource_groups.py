"""The store's ``resource_group`` locks: which job holds each group (GitLab's
``resource_group``: one job of the group at a time, across builds and API processes).

Every change is one UPDATE with the expected holder in its WHERE, so two coordinators
can never both take a group.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from farm.db.tables import JobRow, ResourceGroupRow
from farm.domain.clock import utcnow
from farm.domain.statuses import JobStatus


class ResourceGroupsMixin:
    """Resource-group methods of :class:`farm.db.repository.Store`."""

    _sessions: sessionmaker[Session]  # provided by Store

    def _tx(self) -> AbstractContextManager[Session]:  # provided by Store
        raise NotImplementedError

    def take_resource_group(self, name: str, job_id: int, stale: int | None = None) -> bool:
        """Make ``job_id`` the holder of group ``name`` if it is free (or already its own).

        With ``stale``, take it over from that (finished) holder instead. One UPDATE with
        the expected holder in its WHERE: two coordinators can never both win.
        """
        try:
            with self._tx() as s:
                if s.get(ResourceGroupRow, name) is None:
                    s.add(ResourceGroupRow(name=name, holder_job_id=None, updated_at=utcnow()))
        except IntegrityError:
            pass  # created concurrently: fine, the CAS below decides
        holder = (
            ResourceGroupRow.holder_job_id == stale
            if stale is not None
            else or_(
                ResourceGroupRow.holder_job_id.is_(None), ResourceGroupRow.holder_job_id == job_id
            )
        )
        with self._tx() as s:
            res = s.execute(
                update(ResourceGroupRow)
                .where(ResourceGroupRow.name == name, holder)
                .values(holder_job_id=job_id, updated_at=utcnow())
            )
            return bool(res.rowcount)  # type: ignore[attr-defined]

    def release_resource_group(self, name: str, job_id: int) -> bool:
        """Free group ``name`` if ``job_id`` holds it; False when it did not."""
        with self._tx() as s:
            res = s.execute(
                update(ResourceGroupRow)
                .where(ResourceGroupRow.name == name, ResourceGroupRow.holder_job_id == job_id)
                .values(holder_job_id=None, updated_at=utcnow())
            )
            return bool(res.rowcount)  # type: ignore[attr-defined]

    def resource_group_holder(self, name: str) -> int | None:
        """The job holding group ``name``, if any."""
        with self._sessions() as s:
            row = s.get(ResourceGroupRow, name)
            return None if row is None else row.holder_job_id

    def builds_waiting_for_group(self, name: str) -> list[int]:
        """Builds with a ``created`` job in group ``name``, oldest waiting job first."""
        with self._sessions() as s:
            rows = s.execute(
                select(JobRow.build_id, func.min(JobRow.id).label("first"))
                .where(JobRow.resource_group == name, JobRow.status == JobStatus.CREATED)
                .group_by(JobRow.build_id)
                .order_by("first")
            ).all()
            return [int(r[0]) for r in rows]

    def held_resource_groups(self) -> list[tuple[str, int]]:
        """(group, holder job) of every taken group (recovery after a restart)."""
        with self._sessions() as s:
            q = select(ResourceGroupRow.name, ResourceGroupRow.holder_job_id).where(
                ResourceGroupRow.holder_job_id.is_not(None)
            )
            return [(str(r[0]), int(r[1] or 0)) for r in s.execute(q)]
