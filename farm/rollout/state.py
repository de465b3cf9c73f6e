"""The rollout state machine, pure: a snapshot and an event in, a :class:`Transition` out.

Nothing here waits, deploys or probes: the controller (an edge module) does that, then
reports what happened as an event. Every event function returns the new snapshot plus a
:class:`HistoryEntry`, or raises :class:`~farm.errors.Conflict` with one readable line when
the event is not allowed now. A transition also names the snapshot it applies to
(``expected_state``, ``expected_revision``) so the database applies it as a compare-and-set:
``UPDATE rollouts SET ... WHERE id = ? AND revision = ?``; a concurrent change makes the
update match no row and the caller re-reads and re-decides.

Steps are numbered from 0 here (``snapshot.step``) and from 1 in messages.

========================  =====================================  ==========================
state                     ``step`` is                            live steps (new version)
========================  =====================================  ==========================
``pending``               0 (nothing started)                    none
``progressing``           the step being deployed/baked/checked  ``0..step``
``paused`` (by a person)  the step whose bake was interrupted    ``0..step``
``paused`` (approval)     the step waiting for a person          ``0..step-1``
``stepped_back``          the held step (the last passed one)    ``0..step``
``succeeded``             the last step                          all
``aborted``               where it was when aborted              none (previous everywhere)
========================  =====================================  ==========================

Live steps are exactly the steps in step state ``progressing`` or ``passed`` (a step is live
from the moment it starts: its deploy happens first, then the bake, then the checks).
Step states: ``pending`` (not reached), ``waiting_approval`` (reached, a person must
promote into it), ``progressing``, ``passed``, ``failed`` (its checks failed; not live),
``rolled_back`` (was live, taken back by a step-back or an abort).

Events (anything not listed is a Conflict; ``succeeded`` and ``aborted`` refuse everything):

- ``start`` (pending): step 0 progressing; if step 0 is ``approve: manual`` and the start
  was not itself approved by a person, ``paused`` waiting for approval of step 0 instead.
- ``step_ready(step, attempt)`` (progressing; bake, deploy and checks of ``step`` done and
  passed): the step ``passed``; then the last step → ``succeeded``; next step manual →
  ``paused`` waiting for approval of it; else the next step progressing.
- ``checks_failed(step, attempt, figures)`` (progressing, or paused by a person: pausing
  does not switch off the safety net): the step ``failed``; automatic step-back to the last
  passed step → ``stepped_back`` held there; if no step had passed → ``aborted``.
- ``promote(full)`` (progressing, paused, stepped_back; by a person, so it also approves):
  the current step counts as passed and the next one starts now; from ``stepped_back`` at
  ``j`` the step after the held one (``j+1``) starts again. ``full`` marks every step
  before the last as passed and starts the last one, whose checks still run. Promoting
  while the last step progresses ends the rollout: ``succeeded``.
- ``pause`` (progressing): ``paused``; live steps stay live.
- ``resume`` (paused by a person): ``progressing``; the interrupted step starts a new
  attempt (bake and checks from the beginning). A rollout paused for approval is continued
  with ``promote``; a stepped-back one with ``promote`` (retry) or ``step_back``/``abort``.
- ``step_back`` (progressing, paused, stepped_back; by a person): the highest live step is
  ``rolled_back`` and the one below it is held (``stepped_back``); with no live step left
  below, ``aborted``.
- ``abort`` (any non-terminal state): every live step ``rolled_back``, ``aborted``.

``attempt`` counts how often a step entered ``progressing``; results of the controller
carry the ``(step, attempt)`` they were measured for and a stale one is refused, like job
attempts. ``revision`` counts every transition (the compare-and-set token).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, NoReturn

from farm.errors import Conflict
from farm.rollout.model import Plan
from farm.rollout.snapshot import (
    LIVE,
    HistoryEntry,
    RolloutSnapshot,
    RolloutState,
    StepState,
    Transition,
    check_plan,
    live_scopes,
    live_steps,
    new_rollout,
)

__all__ = [
    "HistoryEntry",
    "RolloutSnapshot",
    "RolloutState",
    "StepState",
    "Transition",
    "abort",
    "checks_failed",
    "live_scopes",
    "live_steps",
    "new_rollout",
    "pause",
    "promote",
    "resume",
    "start",
    "step_back",
    "step_ready",
]


# -- events -------------------------------------------------------------------------------


def start(
    snap: RolloutSnapshot, plan: Plan, *, actor: str, approved: bool = False, reason: str = ""
) -> Transition:
    """Begin at step 0. ``approved``: a person started it, which approves a manual step 0
    (an automatic start of such a plan waits for approval instead)."""
    ev = _Event(snap, plan, "start", actor, "pending")
    if plan.steps[0].approve == "manual" and not approved:
        return ev.wait(reason, 0, snap.steps)
    return ev.progress(reason, 0, snap.steps)


def step_ready(
    snap: RolloutSnapshot,
    plan: Plan,
    *,
    step: int,
    attempt: int,
    actor: str = "controller",
    figures: Mapping[str, Any] | None = None,
    reason: str = "",
) -> Transition:
    """Step ``step`` (attempt ``attempt``) is deployed, baked and passed its checks: move on."""
    ev = _Event(snap, plan, "step_ready", actor, "progressing", figures)
    ev.require_current(step, attempt)
    steps = _with(snap.steps, {step: StepState.PASSED})
    note = reason or f"step {step + 1} ({plan.steps[step].scope}) passed its checks"
    return ev.advance(note, step + 1, steps)


def checks_failed(
    snap: RolloutSnapshot,
    plan: Plan,
    *,
    step: int,
    attempt: int,
    figures: Mapping[str, Any],
    reason: str,
    actor: str = "controller",
) -> Transition:
    """Checks of ``step`` failed: step back to the last passed step, or abort if none passed."""
    ev = _Event(snap, plan, "checks_failed", actor, "progressing paused", figures)
    if snap.waiting_approval:
        ev.refuse("it is waiting for approval, so no checks are running")
    ev.require_current(step, attempt)
    steps = _with(snap.steps, {step: StepState.FAILED})
    note = f"step {step + 1} ({plan.steps[step].scope}) failed: {reason}"
    return ev.hold_or_abort(note, step - 1, steps)


def promote(
    snap: RolloutSnapshot, plan: Plan, *, actor: str, full: bool = False, reason: str = ""
) -> Transition:
    """A person moves the rollout on now: to the next step, or (``full``) to the last one."""
    name = "promote_full" if full else "promote"
    ev = _Event(snap, plan, name, actor, "progressing paused stepped_back")
    last = len(snap.steps) - 1
    if snap.state is RolloutState.STEPPED_BACK:
        target = snap.step + 1  # retry the step after the held one
        changes = {i: StepState.PENDING for i in range(target, last + 1)}
    elif snap.waiting_approval:
        target = snap.step  # the promote is the approval
        changes = {}
    else:
        target = snap.step + 1  # the current step counts as passed, checked or not
        changes = {snap.step: StepState.PASSED}
    if target > last:
        return ev.finish(reason or f"promoted to the end by {actor}", _with(snap.steps, changes))
    if full:
        changes.update({i: StepState.PASSED for i in range(target, last)})
        target = last
    return ev.progress(reason, target, _with(snap.steps, changes))


def pause(snap: RolloutSnapshot, plan: Plan, *, actor: str, reason: str = "") -> Transition:
    """Hold the rollout where it is; live scopes keep the new version."""
    ev = _Event(snap, plan, "pause", actor, "progressing")
    note = f"paused by {actor}" + (f": {reason}" if reason else "")
    return ev.make(note, state=RolloutState.PAUSED, reason=note)


def resume(snap: RolloutSnapshot, plan: Plan, *, actor: str, reason: str = "") -> Transition:
    """Continue a rollout a person paused; the interrupted step bakes and checks again."""
    ev = _Event(snap, plan, "resume", actor, "paused")
    if snap.waiting_approval:
        scope = plan.steps[snap.step].scope
        ev.refuse(f"it waits for approval of step {snap.step + 1} ({scope}); promote to approve")
    return ev.progress(reason, snap.step, snap.steps)


def step_back(snap: RolloutSnapshot, plan: Plan, *, actor: str, reason: str = "") -> Transition:
    """A person takes the highest live scope back to the previous version."""
    ev = _Event(snap, plan, "step_back", actor, "progressing paused stepped_back")
    live = live_steps(snap)
    changes: dict[int, StepState] = {}
    if snap.waiting_approval:
        changes[snap.step] = StepState.PENDING
    if live:
        changes[live[-1]] = StepState.ROLLED_BACK
    note = f"stepped back by {actor}" + (f": {reason}" if reason else "")
    return ev.hold_or_abort(note, live[-1] - 1 if live else -1, _with(snap.steps, changes))


def abort(snap: RolloutSnapshot, plan: Plan, *, actor: str, reason: str = "") -> Transition:
    """Give up: every scope gets the previous release again."""
    ev = _Event(snap, plan, "abort", actor, "pending progressing paused stepped_back")
    note = f"aborted by {actor}" + (f": {reason}" if reason else "")
    return ev.abort(note, snap.steps)


# -- helpers ------------------------------------------------------------------------------


def _with(steps: tuple[StepState, ...], changes: Mapping[int, StepState]) -> tuple[StepState, ...]:
    return tuple(changes.get(i, s) for i, s in enumerate(steps))


def _one_line(text: str) -> str:
    # reasons may come from people and end up in one-line messages and log lines
    return " ".join(text.split())


class _Event:
    """One event being decided: checks that it is allowed, then builds its transition."""

    def __init__(
        self,
        snap: RolloutSnapshot,
        plan: Plan,
        name: str,
        actor: str,
        allowed: str,
        figures: Mapping[str, Any] | None = None,
    ) -> None:
        self.snap, self.plan, self.name, self.actor = snap, plan, name, actor
        self.figures = dict(figures or {})
        check_plan(snap, plan)
        states = [RolloutState(s) for s in allowed.split()]
        if snap.state in states:
            return
        if snap.state is RolloutState.SUCCEEDED:
            self.refuse("it has succeeded; nothing can change it (release a new version instead)")
        if snap.state is RolloutState.ABORTED:
            self.refuse("it was aborted; nothing can change it (start a new rollout instead)")
        where = f"step {snap.step + 1} ({plan.steps[snap.step].scope})"
        detail = f" ({snap.reason})" if snap.reason else ""
        only = " or ".join(s.value for s in states)
        self.refuse(f"it is {snap.state.value} at {where}{detail}; only a {only} rollout can")

    def refuse(self, why: str) -> NoReturn:
        s = self.snap
        verb = self.name.replace("_", " ")
        raise Conflict(f"cannot {verb} rollout {s.id} ({s.project} {s.version}): {why}")

    def require_current(self, step: int, attempt: int) -> None:
        """Refuse a controller result measured for another step or an older attempt."""
        s = self.snap
        if step == s.step and attempt == s.attempt and s.steps[step] is StepState.PROGRESSING:
            return
        self.refuse(
            f"the result is for step {step + 1} attempt {attempt}, but the rollout is at "
            f"step {s.step + 1} attempt {s.attempt} (stale result)"
        )

    def make(self, note: str, **changes: Any) -> Transition:
        """The transition to ``snap`` with ``changes``; ``note`` is the history's reason."""
        s = self.snap
        if "reason" in changes:
            changes["reason"] = _one_line(changes["reason"])
        new = replace(s, revision=s.revision + 1, **changes)
        entry = HistoryEntry(
            self.name,
            self.actor,
            s.state,
            new.state,
            s.step,
            new.step,
            _one_line(note),
            self.figures,
        )
        return Transition(new, entry, s.state, s.revision)

    def progress(self, note: str, step: int, steps: tuple[StepState, ...]) -> Transition:
        """Step ``step`` starts a new attempt: deploy, bake, checks."""
        return self.make(
            note or f"{self.name.replace('_', ' ')} by {self.actor}",
            state=RolloutState.PROGRESSING,
            step=step,
            steps=_with(steps, {step: StepState.PROGRESSING}),
            attempt=self.snap.attempt + 1,
            reason="",
        )

    def advance(self, note: str, target: int, steps: tuple[StepState, ...]) -> Transition:
        if target >= len(steps):
            return self.finish(note, steps)
        if self.plan.steps[target].approve == "manual":
            return self.wait(note, target, steps)
        return self.progress(note, target, steps)

    def wait(self, note: str, step: int, steps: tuple[StepState, ...]) -> Transition:
        scope = self.plan.steps[step].scope
        waiting = f"waiting for approval to roll out step {step + 1} ({scope})"
        return self.make(
            note or waiting,
            state=RolloutState.PAUSED,
            step=step,
            steps=_with(steps, {step: StepState.WAITING_APPROVAL}),
            reason=waiting,
        )

    def finish(self, note: str, steps: tuple[StepState, ...]) -> Transition:
        last = len(steps) - 1
        steps = _with(steps, {last: StepState.PASSED})
        return self.make(note, state=RolloutState.SUCCEEDED, step=last, steps=steps, reason="")

    def hold_or_abort(self, note: str, held: int, steps: tuple[StepState, ...]) -> Transition:
        """Hold at step ``held`` (the highest step still live), or abort when ``held`` < 0."""
        if held < 0:
            return self.abort(note, steps)
        state = RolloutState.STEPPED_BACK
        return self.make(note, state=state, step=held, steps=steps, reason=note)

    def abort(self, note: str, steps: tuple[StepState, ...]) -> Transition:
        changes = {
            i: StepState.ROLLED_BACK if s in LIVE else StepState.PENDING
            for i, s in enumerate(steps)
            if s in LIVE or s is StepState.WAITING_APPROVAL
        }
        steps = _with(steps, changes)
        return self.make(note, state=RolloutState.ABORTED, steps=steps, reason=note)
