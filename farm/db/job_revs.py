"""Per-build change counters: which jobs' states changed since a coordinator last read.

Every update of a job's state (status, attempt, exit code, reason) first takes the next
``builds.rev`` with ``UPDATE … RETURNING`` and writes it on the job, in the same
transaction. The builds row's lock orders those transactions (PostgreSQL holds it to
the commit; SQLite has one writer at a time), so once ``builds.rev`` reads R every
change numbered up to R is committed and visible: reading the build's ``rev`` first and
then the jobs above the last value seen misses nothing (``changes``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from farm.db.rows import BUILDS as _BUILDS
from farm.db.rows import JOBS as _JOBS

# The job columns a build's decision graph reads (coordinator/service.py).
STATE_FIELDS = frozenset({"status", "attempt", "exit_code", "reason"})


class State(NamedTuple):
    """A job's state as ``ports.JobState``."""

    id: int
    status: str
    attempt: int
    exit_code: int | None
    reason: str | None


def touches_state(fields: Mapping[str, Any]) -> bool:
    """Whether an update of these job columns changes what deciding reads."""
    return not STATE_FIELDS.isdisjoint(fields)


def bump(s: Session, build_id: int) -> int:
    """The build's next change number (taking its row's lock until the commit)."""
    q = (
        update(_BUILDS)
        .where(_BUILDS.c.id == build_id)
        .values(rev=_BUILDS.c.rev + 1)
        .returning(_BUILDS.c.rev)
    )
    return int(s.execute(q).scalar_one_or_none() or 0)


# One statement, built once: a claim and a finish each stamp their job (issue 10).
_STAMP = (
    update(_BUILDS)
    .where(
        _BUILDS.c.id
        == select(_JOBS.c.build_id).where(_JOBS.c.id == bindparam("job")).scalar_subquery()
    )
    .values(rev=_BUILDS.c.rev + 1)
    .returning(_BUILDS.c.id, _BUILDS.c.rev)
)


_REV = select(_BUILDS.c.rev).where(_BUILDS.c.id == bindparam("build"))
_ALL = (
    select(_JOBS.c.id, _JOBS.c.status, _JOBS.c.attempt, _JOBS.c.exit_code, _JOBS.c.reason)
    .where(_JOBS.c.build_id == bindparam("build"))
    .order_by(_JOBS.c.position)
)
_CHANGED = _ALL.where(_JOBS.c.rev > bindparam("after"))


def stamp(s: Session, job_id: int) -> tuple[int, int] | None:
    """(the job's build, that build's next change number) for an update of the job's
    state in this transaction; None when there is no such job."""
    row = s.execute(_STAMP, {"job": job_id}).first()
    return None if row is None else (int(row[0]), int(row[1]))


def builds_of(s: Session, job_ids: list[int]) -> list[int]:
    """The builds these jobs belong to, in id order (the order rows are locked in)."""
    q = select(_JOBS.c.build_id).where(_JOBS.c.id.in_(job_ids)).distinct()
    return sorted(int(b) for b in s.scalars(q))


def changes(s: Session, build_id: int, after: int) -> tuple[int, list[State]]:
    """The build's change number now and its jobs changed after ``after`` (all of them
    for a negative ``after``), in definition order."""
    rev = s.scalar(_REV, {"build": build_id})
    q = _CHANGED if after >= 0 else _ALL
    rows = s.execute(q, {"build": build_id, "after": after})
    return int(rev or 0), [State(*r) for r in rows]
