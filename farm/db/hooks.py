"""The webhook delivery ledger: one row per delivery id, so a replay builds nothing twice.

A delivery is *claimed* (a row inserted, unique by delivery id) before its build is
submitted, then *settled* with the build's id, or *released* (the row deleted) when the
submission failed, so the host's "redeliver" can try again.  Two copies of a delivery
arriving at once cannot both build: the second one's insert fails on the unique key and
it is told about the first.  A claim left unsettled by a coordinator that died while
submitting is taken over after :data:`STALE_CLAIM_SECONDS`.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from farm.db.session import aware, transaction
from farm.db.tables import HookDeliveryRow

__all__ = ["STALE_CLAIM_SECONDS", "Claim", "HookDeliveries"]

STALE_CLAIM_SECONDS = 600.0  # an unsettled claim older than this was abandoned


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming a delivery id.

    ``new``: this caller owns the delivery and must settle or release it.  Otherwise the
    delivery was seen before: ``build_id`` is the build it made (None while the first
    copy is still being submitted).
    """

    new: bool
    build_id: int | None = None


class HookDeliveries:
    """Claims, settles and releases webhook deliveries in farm's database."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def _tx(self) -> AbstractContextManager[Session]:
        return transaction(self._sessions)

    def claim(self, delivery: str, host: str, event: str) -> Claim:
        """Take ``delivery`` for this caller, or say what became of it the first time."""
        now = datetime.now(UTC)
        try:
            with self._tx() as s:
                s.add(HookDeliveryRow(delivery=delivery, host=host, event=event, received_at=now))
            return Claim(new=True)
        except IntegrityError:
            pass
        with self._tx() as s:
            row = s.scalars(
                select(HookDeliveryRow).where(HookDeliveryRow.delivery == delivery)
            ).first()
            if row is None:  # released meanwhile: the first copy failed; try once more
                s.add(HookDeliveryRow(delivery=delivery, host=host, event=event, received_at=now))
                return Claim(new=True)
            if row.build_id is not None:
                return Claim(new=False, build_id=row.build_id)
            if aware(row.received_at) > now - timedelta(seconds=STALE_CLAIM_SECONDS):
                return Claim(new=False)
            # Abandoned: take it over with a compare-and-set on its claim time.
            taken = s.execute(
                update(HookDeliveryRow)
                .where(
                    HookDeliveryRow.id == row.id,
                    HookDeliveryRow.build_id.is_(None),
                    HookDeliveryRow.received_at == row.received_at,
                )
                .values(received_at=now)
            )
            return Claim(new=bool(taken.rowcount))  # type: ignore[attr-defined]

    def settle(self, delivery: str, build_id: int) -> None:
        """Record the build a claimed delivery made."""
        with self._tx() as s:
            s.execute(
                update(HookDeliveryRow)
                .where(HookDeliveryRow.delivery == delivery)
                .values(build_id=build_id)
            )

    def release(self, delivery: str) -> None:
        """Forget a claimed delivery that made no build (a redelivery may try again)."""
        with self._tx() as s:
            s.execute(
                delete(HookDeliveryRow).where(
                    HookDeliveryRow.delivery == delivery, HookDeliveryRow.build_id.is_(None)
                )
            )

    def count(self) -> int:
        """How many deliveries are recorded (for tests and operators)."""
        with self._sessions() as s:
            return len(s.scalars(select(HookDeliveryRow.id)).all())
