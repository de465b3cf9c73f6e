"""``schedules``: pipeline schedules, and the compare-and-set that fires each run once.

Several API processes may share one database, and each runs a timer. A due run is taken
by :meth:`ScheduleDb.claim` — ``UPDATE … SET next_run_at=:next WHERE id=? AND active AND
next_run_at=:seen`` — so of the timers that saw the same due run, exactly one moves it on
(and fires it); the others' update matches no row.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from farm.db.session import aware, transaction
from farm.db.tables import ScheduleRow
from farm.domain.clock import utcnow
from farm.domain.schedules import NewSchedule, ScheduleRecord
from farm.errors import NotFound

__all__ = ["ScheduleDb"]

_EDITABLE = frozenset(
    {"project", "repo", "ref", "cron", "timezone", "description", "variables", "active"}
)


def _record(row: ScheduleRow) -> ScheduleRecord:
    return ScheduleRecord(
        id=row.id,
        project=row.project,
        repo=row.repo,
        ref=row.ref,
        cron=row.cron,
        timezone=row.timezone,
        description=row.description,
        variables=dict(row.variables or {}),
        active=row.active,
        next_run_at=aware(row.next_run_at),
        last_run_at=aware(row.last_run_at),
        last_build_id=row.last_build_id,
        last_error=row.last_error,
        created_at=aware(row.created_at),
        updated_at=aware(row.updated_at),
    )


class ScheduleDb:
    """Stores schedules; returns :class:`~farm.domain.schedules.ScheduleRecord`."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def create(self, new: NewSchedule, next_run_at: datetime | None) -> ScheduleRecord:
        """Store a schedule whose first run is ``next_run_at`` (None: paused)."""
        now = utcnow()
        with transaction(self._sessions) as s:
            row = ScheduleRow(
                project=new.project,
                repo=new.repo,
                ref=new.ref,
                cron=new.cron,
                timezone=new.timezone,
                description=new.description,
                variables=dict(new.variables),
                active=new.active,
                next_run_at=next_run_at,
                created_at=now,
                updated_at=now,
            )
            s.add(row)
            s.flush()
            return _record(row)

    def get(self, schedule_id: int) -> ScheduleRecord:
        """One schedule; NotFound if there is none."""
        with self._sessions() as s:
            row = s.get(ScheduleRow, schedule_id)
            if row is None:
                raise NotFound(f"schedule {schedule_id} does not exist")
            return _record(row)

    def find(self, project: str | None = None) -> list[ScheduleRecord]:
        """Every schedule (of ``project``), oldest first."""
        with self._sessions() as s:
            q = select(ScheduleRow).order_by(ScheduleRow.id)
            if project:
                q = q.where(ScheduleRow.project == project)
            return [_record(r) for r in s.scalars(q)]

    def update(
        self,
        schedule_id: int,
        change: Callable[[ScheduleRecord], dict[str, Any]],
    ) -> ScheduleRecord:
        """Apply ``change(current)`` (the fields to set, ``next_run_at`` included) in one
        transaction; NotFound if there is none."""
        with transaction(self._sessions) as s:
            row = s.get(ScheduleRow, schedule_id)
            if row is None:
                raise NotFound(f"schedule {schedule_id} does not exist")
            fields = change(_record(row))
            for name, value in fields.items():
                if name not in _EDITABLE and name != "next_run_at":
                    raise ValueError(f"schedule field {name!r} cannot be set")
                setattr(row, name, value)
            row.updated_at = utcnow()
            s.flush()
            return _record(row)

    def delete(self, schedule_id: int) -> None:
        """Remove a schedule; NotFound if there is none."""
        with transaction(self._sessions) as s:
            res = s.execute(delete(ScheduleRow).where(ScheduleRow.id == schedule_id))
            if not res.rowcount:  # type: ignore[attr-defined]
                raise NotFound(f"schedule {schedule_id} does not exist")

    def due(self, now: datetime, limit: int = 100) -> list[ScheduleRecord]:
        """Active schedules whose next run is at or before ``now``, most overdue first."""
        with self._sessions() as s:
            q = (
                select(ScheduleRow)
                .where(ScheduleRow.active.is_(True), ScheduleRow.next_run_at <= now)
                .order_by(ScheduleRow.next_run_at, ScheduleRow.id)
                .limit(limit)
            )
            return [_record(r) for r in s.scalars(q)]

    def claim(self, schedule_id: int, seen: datetime, next_run_at: datetime) -> bool:
        """Move a due run from ``seen`` to ``next_run_at`` if no one else did: True for
        exactly one of the timers that saw it due."""
        with transaction(self._sessions) as s:
            res = s.execute(
                update(ScheduleRow)
                .where(
                    ScheduleRow.id == schedule_id,
                    ScheduleRow.active.is_(True),
                    ScheduleRow.next_run_at == seen,
                )
                .values(next_run_at=next_run_at)
            )
            return bool(res.rowcount)  # type: ignore[attr-defined]

    def record_run(
        self, schedule_id: int, at: datetime, build_id: int | None, error: str | None
    ) -> None:
        """What a run made: its build, or why none (then the last build stays shown; the
        schedule may be gone meanwhile: nothing happens)."""
        fields: dict[str, Any] = {"last_run_at": at, "last_error": error}
        if build_id is not None:
            fields["last_build_id"] = build_id
        with transaction(self._sessions) as s:
            s.execute(update(ScheduleRow).where(ScheduleRow.id == schedule_id).values(**fields))
