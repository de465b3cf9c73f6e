"""A rollout's state as data: states, the snapshot, history lines, transitions.

The values :mod:`farm.rollout.state`'s events read and produce, and which steps are
*live* (serve the new version) in a snapshot. Plain, frozen, JSON-round-trippable: the
database stores a snapshot as is (``to_dict``/``from_dict``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from farm.errors import InvalidRequest
from farm.rollout.model import Plan


class RolloutState(StrEnum):
    """Where a rollout as a whole is."""

    PENDING = "pending"
    PROGRESSING = "progressing"
    PAUSED = "paused"
    STEPPED_BACK = "stepped_back"
    SUCCEEDED = "succeeded"
    ABORTED = "aborted"


class StepState(StrEnum):
    """Where one step of a rollout is."""

    PENDING = "pending"
    WAITING_APPROVAL = "waiting_approval"
    PROGRESSING = "progressing"
    PASSED = "passed"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"


TERMINAL = frozenset({RolloutState.SUCCEEDED, RolloutState.ABORTED})
LIVE = frozenset({StepState.PROGRESSING, StepState.PASSED})


@dataclass(frozen=True)
class RolloutSnapshot:
    """One rollout at one revision; every field is plain data (see :meth:`to_dict`)."""

    id: int
    project: str
    version: str
    previous_version: str | None  # None: there was no release before (nothing to fall back to)
    state: RolloutState
    step: int
    steps: tuple[StepState, ...]
    attempt: int = 0
    revision: int = 0
    reason: str = ""  # why it is in its state: who paused and why, which check failed, ...

    @property
    def waiting_approval(self) -> bool:
        """Paused because the current step needs a person's promote."""
        return self.steps[self.step] is StepState.WAITING_APPROVAL

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict; :meth:`from_dict` reads it back."""
        return {
            "id": self.id,
            "project": self.project,
            "version": self.version,
            "previous_version": self.previous_version,
            "state": self.state.value,
            "step": self.step,
            "steps": [s.value for s in self.steps],
            "attempt": self.attempt,
            "revision": self.revision,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RolloutSnapshot:
        """Read a dict made by :meth:`to_dict`; InvalidRequest when it is not one."""
        try:
            snap = cls(
                id=int(data["id"]),
                project=str(data["project"]),
                version=str(data["version"]),
                previous_version=data.get("previous_version"),
                state=RolloutState(data["state"]),
                step=int(data["step"]),
                steps=tuple(StepState(s) for s in data["steps"]),
                attempt=int(data.get("attempt", 0)),
                revision=int(data.get("revision", 0)),
                reason=str(data.get("reason", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidRequest(f"not a rollout snapshot: {exc!r}") from None
        if not snap.steps or not 0 <= snap.step < len(snap.steps):
            raise InvalidRequest(f"not a rollout snapshot: step {snap.step} of {len(snap.steps)}")
        return snap


@dataclass(frozen=True)
class HistoryEntry:
    """One line of a rollout's history: who did what, from where to where, and why."""

    event: str
    actor: str
    from_state: RolloutState
    to_state: RolloutState
    from_step: int
    to_step: int
    reason: str
    figures: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (``figures`` must hold JSON-able values, as the checks give)."""
        return {**asdict(self), "figures": dict(self.figures)}  # states are str enums


@dataclass(frozen=True)
class Transition:
    """The outcome of an event: apply ``new`` only where the stored row is still ``expected``."""

    new: RolloutSnapshot
    entry: HistoryEntry
    expected_state: RolloutState
    expected_revision: int


def new_rollout(
    id: int, project: str, version: str, previous_version: str | None, plan: Plan
) -> RolloutSnapshot:
    """A ``pending`` rollout of ``version`` through the steps of ``plan``."""
    steps = (StepState.PENDING,) * len(plan.steps)
    return RolloutSnapshot(id, project, version, previous_version, RolloutState.PENDING, 0, steps)


def live_steps(snapshot: RolloutSnapshot) -> list[int]:
    """Indexes of the steps whose scopes serve the new version."""
    if snapshot.state is RolloutState.ABORTED:
        return []
    return [i for i, s in enumerate(snapshot.steps) if s in LIVE]


def live_scopes(snapshot: RolloutSnapshot, plan: Plan) -> list[str]:
    """Names of the scopes serving the new version (``all`` included when live)."""
    check_plan(snapshot, plan)
    return [plan.steps[i].scope for i in live_steps(snapshot)]


def check_plan(snap: RolloutSnapshot, plan: Plan) -> None:
    """InvalidRequest unless ``plan`` has as many steps as the rollout (its own plan)."""
    if len(plan.steps) != len(snap.steps):
        raise InvalidRequest(
            f"rollout {snap.id} has {len(snap.steps)} steps but the plan given has "
            f"{len(plan.steps)}; use the plan the rollout was started with"
        )
