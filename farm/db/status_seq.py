"""The order of a build's commit statuses: ``builds.status_seq``.

:meth:`StatusSequence.next` increments the build's counter and reads its status in one
``UPDATE … RETURNING`` (row-locked), after the transition being reported committed. So
the status read with a higher number was read later: once a build is final, every
number taken from then on comes with the final status, and the highest number a
deliverer sees always carries the newest status (farm/githost/status.py).
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from farm.db.session import transaction
from farm.db.tables import BuildRow

__all__ = ["StatusSequence"]


class StatusSequence:
    """Numbers a build's status reports, atomically with reading its status."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def next(self, build_id: int) -> tuple[int, str] | None:
        """(the next number, the build's status now); None if the build is gone."""
        with transaction(self._sessions) as s:
            row = s.execute(
                update(BuildRow)
                .where(BuildRow.id == build_id)
                .values(status_seq=BuildRow.status_seq + 1)
                .returning(BuildRow.status_seq, BuildRow.status)
            ).first()
        return (int(row[0]), str(row[1])) if row is not None else None
