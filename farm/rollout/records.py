"""What the rollout store returns: a rollout with the engine's bookkeeping, and history lines.

Plain values, like :mod:`farm.domain.records`: the database layer builds them, the engine
and the API read them. The plan stays a JSON-able dict here (validating a 10,000-CIDR plan
on every read would be wasted work); the engine turns it into a
:class:`~farm.rollout.model.Plan` once per rollout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from farm.rollout.snapshot import RolloutSnapshot, RolloutState


class Phase(StrEnum):
    """Where the engine is inside the current step (only meaningful while progressing)."""

    DEPLOY = "deploy"  # the plan's deploy job runs for this step's scope
    BAKE = "bake"  # waiting ``bake`` seconds before the checks
    CHECK = "check"  # the step's checks run
    IDLE = "idle"  # nothing to do: paused, held, finished or not started


# A rollout in one of these holds its project: no other may start meanwhile.
ACTIVE = frozenset({RolloutState.PROGRESSING, RolloutState.PAUSED, RolloutState.STEPPED_BACK})


@dataclass(frozen=True)
class RolloutRecord:
    """One stored rollout: its state-machine snapshot plus the engine's place in the step."""

    snapshot: RolloutSnapshot
    release_id: int
    plan: dict[str, Any]
    phase: Phase
    phase_until: datetime | None
    job_build_id: int | None
    checks: dict[str, Any]  # the latest verdict: {step, attempt, passed, reason, checks: [...]}
    actor: str
    created_at: datetime
    updated_at: datetime

    @property
    def id(self) -> int:
        """The rollout's id."""
        return self.snapshot.id

    @property
    def project(self) -> str:
        """The project being rolled out."""
        return self.snapshot.project

    @property
    def state(self) -> RolloutState:
        """The state of the rollout as a whole."""
        return self.snapshot.state


@dataclass(frozen=True)
class RolloutEvent:
    """One line of a rollout's append-only history."""

    id: int
    rollout_id: int
    at: datetime
    actor: str
    event: str
    from_state: str
    to_state: str
    from_step: int
    to_step: int
    reason: str
    figures: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The API's shape: at, actor, event, from, to, from_step, to_step, reason, figures."""
        return {
            "at": self.at.isoformat(),
            "actor": self.actor,
            "event": self.event,
            "from": self.from_state,
            "to": self.to_state,
            "from_step": self.from_step,
            "to_step": self.to_step,
            "reason": self.reason,
            "figures": self.figures,
        }
