"""Persistence of rollouts and their history; every change is a compare-and-set.

A transition decided by :mod:`farm.rollout.state` is applied as
``UPDATE rollouts … WHERE id=? AND revision=?`` together with its history line, in one
transaction: a concurrent promote and step-back both read revision *n*, one update
matches, the other matches no row and its caller answers 409. The partial unique index
on ``(project) WHERE active`` makes "one active rollout per project" a fact of the
database, not of timing.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from farm.db.session import aware, transaction
from farm.db.tables import ReleaseRow, RolloutEventRow, RolloutRow
from farm.errors import Conflict, NotFound
from farm.rollout.model import Plan
from farm.rollout.records import ACTIVE, Phase, RolloutEvent, RolloutRecord
from farm.rollout.snapshot import RolloutSnapshot, RolloutState, Transition, new_rollout


def _now() -> datetime:
    return datetime.now(UTC)


def _record(row: RolloutRow) -> RolloutRecord:
    return RolloutRecord(
        snapshot=RolloutSnapshot.from_dict(row.snapshot),
        release_id=row.release_id,
        plan=dict(row.plan),
        phase=Phase(row.phase),
        phase_until=aware(row.phase_until),
        job_build_id=row.job_build_id,
        checks=dict(row.checks or {}),
        actor=row.actor,
        created_at=aware(row.created_at),
        updated_at=aware(row.updated_at),
    )


def _event(row: RolloutEventRow) -> RolloutEvent:
    return RolloutEvent(
        id=row.id,
        rollout_id=row.rollout_id,
        at=aware(row.at),
        actor=row.actor,
        event=row.event,
        from_state=row.from_state,
        to_state=row.to_state,
        from_step=row.from_step,
        to_step=row.to_step,
        reason=row.reason,
        figures=dict(row.figures or {}),
    )


class RolloutDb:
    """Rollouts over farm's database (SQLite or PostgreSQL)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def _tx(self) -> AbstractContextManager[Session]:
        return transaction(self._sessions)

    # --- reads -------------------------------------------------------------------------

    def get(self, rollout_id: int) -> RolloutRecord:
        """One rollout; NotFound if there is none."""
        with self._sessions() as s:
            row = s.get(RolloutRow, rollout_id)
            if row is None:
                raise NotFound(f"rollout {rollout_id} does not exist")
            return _record(row)

    def list_rollouts(self, project: str | None = None, limit: int = 50) -> list[RolloutRecord]:
        """Newest rollouts first."""
        with self._sessions() as s:
            q = select(RolloutRow).order_by(RolloutRow.id.desc()).limit(limit)
            if project:
                q = q.where(RolloutRow.project == project)
            return [_record(r) for r in s.scalars(q)]

    def with_states(self, states: AbstractSet[str]) -> list[RolloutRecord]:
        """Every rollout in one of ``states``, oldest first (the engine's work list)."""
        with self._sessions() as s:
            q = select(RolloutRow).where(RolloutRow.state.in_(list(states))).order_by(RolloutRow.id)
            return [_record(r) for r in s.scalars(q)]

    def active(self, project: str) -> RolloutRecord | None:
        """The rollout holding ``project`` (progressing, paused or stepped back), if any."""
        with self._sessions() as s:
            row = s.scalar(
                select(RolloutRow).where(RolloutRow.project == project, RolloutRow.active)
            )
            return None if row is None else _record(row)

    def routing(self, project: str) -> RolloutRecord | None:
        """The rollout that decides who gets which version: the newest one that started."""
        with self._sessions() as s:
            row = s.scalar(
                select(RolloutRow)
                .where(RolloutRow.project == project, RolloutRow.state != RolloutState.PENDING)
                .order_by(RolloutRow.id.desc())
                .limit(1)
            )
            return None if row is None else _record(row)

    def routing_key(self, project: str) -> tuple[int, int] | None:
        """(id, revision) of :meth:`routing`'s rollout: a cheap "has it changed?" probe."""
        with self._sessions() as s:
            row = s.execute(
                select(RolloutRow.id, RolloutRow.revision)
                .where(RolloutRow.project == project, RolloutRow.state != RolloutState.PENDING)
                .order_by(RolloutRow.id.desc())
                .limit(1)
            ).first()
            return None if row is None else (int(row[0]), int(row[1]))

    def previous_version(self, project: str, release_id: int) -> str | None:
        """What clients outside the live scopes get while ``release_id`` rolls out.

        The version of the project's newest rollout that reached everyone; without one,
        the newest release older than this one; without that, None.
        """
        with self._sessions() as s:
            done = s.scalar(
                select(RolloutRow.version)
                .where(RolloutRow.project == project, RolloutRow.state == RolloutState.SUCCEEDED)
                .order_by(RolloutRow.id.desc())
                .limit(1)
            )
            if done is not None:
                return done
            return s.scalar(
                select(ReleaseRow.version)
                .where(ReleaseRow.project == project, ReleaseRow.id < release_id)
                .order_by(ReleaseRow.id.desc())
                .limit(1)
            )

    def referencing(self, release_id: int) -> list[int]:
        """Ids of the rollouts that point at a release (it may not be deleted)."""
        with self._sessions() as s:
            q = select(RolloutRow.id).where(RolloutRow.release_id == release_id)
            return [int(i) for i in s.scalars(q)]

    def history(self, rollout_id: int) -> list[RolloutEvent]:
        """A rollout's history, oldest first."""
        with self._sessions() as s:
            q = (
                select(RolloutEventRow)
                .where(RolloutEventRow.rollout_id == rollout_id)
                .order_by(RolloutEventRow.id)
            )
            return [_event(r) for r in s.scalars(q)]

    # --- writes ------------------------------------------------------------------------

    def create(
        self,
        *,
        project: str,
        release_id: int,
        version: str,
        previous_version: str | None,
        plan: Plan,
        actor: str,
    ) -> RolloutRecord:
        """A new ``pending`` rollout (it holds nothing until its start is applied)."""
        now = _now()
        with self._tx() as s:
            row = RolloutRow(
                project=project,
                release_id=release_id,
                version=version,
                previous_version=previous_version,
                state=RolloutState.PENDING,
                step=0,
                revision=0,
                active=False,
                snapshot={},
                plan=plan.to_dict(),
                phase=Phase.IDLE,
                actor=actor,
                created_at=now,
                updated_at=now,
            )
            s.add(row)
            s.flush()
            snap = new_rollout(row.id, project, version, previous_version, plan)
            row.snapshot = snap.to_dict()
            return _record(row)

    def apply(
        self,
        transition: Transition,
        *,
        phase: Phase,
        phase_until: datetime | None = None,
        job_build_id: int | None = None,
        checks: dict[str, Any] | None = None,
    ) -> RolloutRecord | None:
        """Apply a transition and append its history line; None if the row moved meanwhile.

        Conflict when it would make a second rollout of the project active.
        """
        new = transition.new
        now = _now()
        values: dict[str, Any] = {
            "snapshot": new.to_dict(),
            "state": new.state,
            "step": new.step,
            "revision": new.revision,
            "active": new.state in ACTIVE,
            "phase": phase,
            "phase_until": phase_until,
            "job_build_id": job_build_id,
            "updated_at": now,
        }
        if checks is not None:
            values["checks"] = checks
        e = transition.entry
        try:
            with self._tx() as s:
                res = s.execute(
                    update(RolloutRow)
                    .where(
                        RolloutRow.id == new.id,
                        RolloutRow.revision == transition.expected_revision,
                        RolloutRow.state == transition.expected_state,
                    )
                    .values(**values)
                )
                if not res.rowcount:  # type: ignore[attr-defined]
                    return None
                s.add(
                    RolloutEventRow(
                        rollout_id=new.id,
                        at=now,
                        actor=e.actor,
                        event=e.event,
                        from_state=e.from_state,
                        to_state=e.to_state,
                        from_step=e.from_step,
                        to_step=e.to_step,
                        reason=e.reason,
                        figures=dict(e.figures),
                    )
                )
        except IntegrityError:
            holder = self.active(new.project)
            raise Conflict(
                f"project {new.project} already has an active rollout"
                + (f" ({holder.id}, {holder.state})" if holder else "")
                + ": finish, promote or abort it first"
            ) from None
        return self.get(new.id)

    def set_phase(
        self,
        rollout_id: int,
        *,
        revision: int,
        from_phase: Phase,
        phase: Phase,
        phase_until: datetime | None = None,
        job_build_id: int | None = None,
        checks: dict[str, Any] | None = None,
    ) -> bool:
        """Move the engine's place inside a step (CAS on revision and phase)."""
        values: dict[str, Any] = {
            "phase": phase,
            "phase_until": phase_until,
            "job_build_id": job_build_id,
            "updated_at": _now(),
        }
        if checks is not None:
            values["checks"] = checks
        with self._tx() as s:
            res = s.execute(
                update(RolloutRow)
                .where(
                    RolloutRow.id == rollout_id,
                    RolloutRow.revision == revision,
                    RolloutRow.phase == from_phase,
                )
                .values(**values)
            )
            return bool(res.rowcount)  # type: ignore[attr-defined]

    def delete_pending(self, rollout_id: int) -> None:
        """Remove a rollout that never started (a refused start leaves nothing behind)."""
        with self._tx() as s:
            s.execute(
                delete(RolloutRow).where(
                    RolloutRow.id == rollout_id, RolloutRow.state == RolloutState.PENDING
                )
            )
