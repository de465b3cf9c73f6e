"""Rollout commands: start, promote, pause, resume, step back, abort — as compare-and-sets.

Each command reads the rollout, lets :mod:`farm.rollout.state` decide the transition and
applies it with :meth:`RolloutDb.apply` (``WHERE revision = ?``). Two people acting on
one rollout at once both decide from revision *n*; the database takes one, and the other
gets a 409 naming what changed. The controller (:mod:`farm.deploy.controller`) drives the
steps forward with the same :meth:`RolloutEngine.apply`.

Decisions (what Argo Rollouts users would expect, and where farm differs):

- One active rollout per project (progressing, paused or stepped back). A person's start
  while one is active is refused with 409. A continuous-deployment start is *queued*
  (``pending``) and begins when the project is free; a newer queued rollout supersedes
  an older one (aborted with that reason), so only the newest green build waits.
- ``previous_version`` is what everyone outside the live scopes keeps: the version of
  the project's newest rollout that reached everyone, else the newest older release.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from farm.coordinator.service import Coordinator
from farm.db.releases import RegistryDb
from farm.db.rollouts import RolloutDb
from farm.deploy.plans import read_plan
from farm.deploy.routing import Routing
from farm.errors import Conflict, InvalidRequest
from farm.registry.store import BlobStore
from farm.rollout import state as rules
from farm.rollout.model import Plan
from farm.rollout.records import ACTIVE, Phase, RolloutRecord
from farm.rollout.snapshot import RolloutSnapshot, RolloutState, Transition

log = logging.getLogger("farm.rollout")

CD_ACTOR = "continuous-deployment"
ACTIONS = ("promote", "pause", "resume", "step_back", "abort")


@dataclass
class RolloutEngine:
    """Starts rollouts and applies people's commands; shared with the controller."""

    rollouts: RolloutDb
    registry: RegistryDb
    coord: Coordinator
    blobs: BlobStore
    routing: Routing

    def plan_of(self, rec: RolloutRecord) -> Plan:
        """The plan a rollout was started with (validated once, then cached)."""
        return self.routing.plans.of(rec)

    # --- start -------------------------------------------------------------------------

    def start(
        self, project: str, version: str, *, actor: str, queue: bool = False
    ) -> RolloutRecord:
        """Roll ``version`` of ``project`` out by the plan in its commit.

        A person's start (``queue=False``) approves a manual first step and is refused
        with 409 while another rollout of the project is active; nothing is left behind.
        """
        release = self.registry.get_release(project, version)
        holder = self.rollouts.active(project)
        if holder is not None and not queue:
            raise _busy(holder)
        build = self.coord.store.get_build(release.build_id)
        plan = read_plan(self.blobs, build)
        previous = self.rollouts.previous_version(project, release.id)
        if previous == version:
            raise Conflict(f"{project} {version} already serves everyone: nothing to roll out")
        rec = self.rollouts.create(
            project=project,
            release_id=release.id,
            version=version,
            previous_version=previous,
            plan=plan,
            actor=actor,
        )
        self.routing.plans.put(rec.id, plan)
        log.info("rollout %s of %s %s created by %s", rec.id, project, version, actor)
        if queue:
            self.start_queued(project)
            return self.rollouts.get(rec.id)
        try:
            started = self.apply(rec, rules.start(rec.snapshot, plan, actor=actor, approved=True))
        except Conflict:
            self.rollouts.delete_pending(rec.id)  # a refused start leaves nothing half-made
            raise
        if started is None:  # nobody else can see a pending rollout yet: not expected
            raise Conflict(f"rollout {rec.id} changed while it was being started")
        return started

    def start_queued(self, project: str) -> None:
        """Start the newest queued rollout of ``project`` if the project is free."""
        queued = [
            r for r in self.rollouts.list_rollouts(project, 200) if r.state is RolloutState.PENDING
        ]
        if not queued or self.rollouts.active(project) is not None:
            return
        newest, older = queued[0], queued[1:]
        why = f"superseded by rollout {newest.id} ({newest.snapshot.version})"
        for rec in older:
            self.try_apply(rec, lambda r, p: rules.abort(r.snapshot, p, actor=CD_ACTOR, reason=why))
        self.try_apply(
            newest, lambda r, p: rules.start(r.snapshot, p, actor=CD_ACTOR, approved=False)
        )

    # --- people's commands ---------------------------------------------------------------

    def command(
        self, rollout_id: int, action: str, *, actor: str, reason: str = "", full: bool = False
    ) -> RolloutRecord:
        """Apply ``action`` (promote, pause, resume, step_back, abort); 409 if refused."""
        if action not in ACTIONS:
            raise InvalidRequest(f"unknown rollout action {action!r}: use {', '.join(ACTIONS)}")
        rec = self.rollouts.get(rollout_id)
        plan = self.plan_of(rec)
        snap = rec.snapshot
        if action == "promote":
            transition = rules.promote(snap, plan, actor=actor, full=full, reason=reason)
        else:
            decide: Callable[..., Transition] = getattr(rules, action)
            transition = decide(snap, plan, actor=actor, reason=reason)
        applied = self.apply(rec, transition)
        if applied is None:
            now = self.rollouts.get(rollout_id)
            raise Conflict(
                f"rollout {rollout_id} changed while {action.replace('_', '-')} was decided "
                f"(it is now {now.state} at step {now.snapshot.step + 1}, revision "
                f"{now.snapshot.revision}): read it again and retry"
            )
        return applied

    # --- applying ------------------------------------------------------------------------

    def apply(
        self, rec: RolloutRecord, transition: Transition, checks: dict[str, Any] | None = None
    ) -> RolloutRecord | None:
        """Persist ``transition`` (CAS); None when the rollout moved meanwhile."""
        plan = self.plan_of(rec)
        phase, until = first_phase(transition.new, plan)
        applied = self.rollouts.apply(transition, phase=phase, phase_until=until, checks=checks)
        if applied is None:
            return None
        e = transition.entry
        log.info(
            "rollout %s: %s by %s: %s step %s -> %s step %s (%s)",
            rec.id,
            e.event,
            e.actor,
            e.from_state,
            e.from_step + 1,
            e.to_state,
            e.to_step + 1,
            e.reason,
        )
        self.routing.invalidate(rec.project)
        if applied.state not in ACTIVE and applied.state is not RolloutState.PENDING:
            self.start_queued(rec.project)
        return applied

    def try_apply(
        self, rec: RolloutRecord, decide: Callable[[RolloutRecord, Plan], Transition]
    ) -> RolloutRecord | None:
        """Apply a controller-side transition; a refusal or a lost race is only logged."""
        try:
            return self.apply(rec, decide(rec, self.plan_of(rec)))
        except Conflict as exc:
            log.info("rollout %s: %s", rec.id, exc)
            return None


def first_phase(snap: RolloutSnapshot, plan: Plan) -> tuple[Phase, datetime | None]:
    """Where the controller starts inside the step a transition leads to."""
    if snap.state is not RolloutState.PROGRESSING:
        return Phase.IDLE, None
    if plan.deploy_job:
        return Phase.DEPLOY, None
    return Phase.BAKE, datetime.now(UTC) + timedelta(seconds=plan.steps[snap.step].bake)


def _busy(holder: RolloutRecord) -> Conflict:
    return Conflict(
        f"project {holder.project} already has an active rollout: {holder.id} "
        f"({holder.snapshot.version}, {holder.state} at step {holder.snapshot.step + 1}); "
        "promote, step it back or abort it first"
    )
