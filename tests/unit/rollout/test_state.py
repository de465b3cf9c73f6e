"""The rollout state machine: every event, from every state, and the invariants between them."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from farm.errors import Conflict, InvalidRequest
from farm.rollout import (
    Plan,
    RolloutSnapshot,
    RolloutState,
    StepState,
    Transition,
    abort,
    checks_failed,
    live_scopes,
    live_steps,
    load_plan,
    new_rollout,
    pause,
    promote,
    resume,
    start,
    step_back,
    step_ready,
)

S = RolloutState
P = StepState

PLAN = load_plan(
    "scopes: {canada: [198.51.100.0/24], usa: [203.0.113.0/24]}\n"
    "steps: [{scope: canada}, {scope: usa, approve: manual}, {scope: all}]\n"
)
FAILED = {"samples": 5, "failures": 3}


def fresh(plan: Plan = PLAN) -> RolloutSnapshot:
    return new_rollout(7, "shop", "1.4.2", "1.4.1", plan)


def ok(snap: RolloutSnapshot, plan: Plan = PLAN) -> RolloutSnapshot:
    """The controller reports the current step passed."""
    return step_ready(snap, plan, step=snap.step, attempt=snap.attempt).new


def fail(snap: RolloutSnapshot, plan: Plan = PLAN) -> Transition:
    return checks_failed(
        snap, plan, step=snap.step, attempt=snap.attempt, figures=FAILED, reason="3/5 failed"
    )


def at_usa() -> RolloutSnapshot:
    """Progressing at step 1 (usa), canada passed."""
    return promote(ok(start(fresh(), PLAN, actor="alice").new), PLAN, actor="bob").new


def test_a_new_rollout_is_pending_with_nothing_live() -> None:
    snap = fresh()
    assert (snap.state, snap.step, snap.steps) == (S.PENDING, 0, (P.PENDING,) * 3)
    assert live_scopes(snap, PLAN) == []


def test_the_happy_path_with_a_manual_approval() -> None:
    t = start(fresh(), PLAN, actor="alice")
    assert (t.new.state, t.new.step, t.new.attempt) == (S.PROGRESSING, 0, 1)
    assert live_scopes(t.new, PLAN) == ["canada"]

    t = step_ready(t.new, PLAN, step=0, attempt=1, figures={"checks": []})
    waiting = t.new
    assert (waiting.state, waiting.step) == (S.PAUSED, 1)
    assert waiting.steps == (P.PASSED, P.WAITING_APPROVAL, P.PENDING)
    assert waiting.waiting_approval
    assert waiting.reason == "waiting for approval to roll out step 2 (usa)"
    assert live_scopes(waiting, PLAN) == ["canada"]
    assert t.entry.figures == {"checks": []}

    with pytest.raises(Conflict, match="waits for approval of step 2 \\(usa\\); promote"):
        resume(waiting, PLAN, actor="bob")

    usa = promote(waiting, PLAN, actor="bob").new
    assert (usa.state, usa.step, usa.attempt) == (S.PROGRESSING, 1, 2)
    assert live_scopes(usa, PLAN) == ["canada", "usa"]

    everyone = ok(usa)
    assert (everyone.state, everyone.step) == (S.PROGRESSING, 2)
    assert live_scopes(everyone, PLAN) == ["canada", "usa", "all"]

    t = step_ready(everyone, PLAN, step=2, attempt=3)
    assert (t.new.state, t.new.step, t.new.steps) == (S.SUCCEEDED, 2, (P.PASSED,) * 3)
    assert live_scopes(t.new, PLAN) == ["canada", "usa", "all"]


def test_failed_checks_step_back_to_the_last_passed_step() -> None:
    t = fail(at_usa())
    held = t.new
    assert (held.state, held.step) == (S.STEPPED_BACK, 0)
    assert held.steps == (P.PASSED, P.FAILED, P.PENDING)
    assert live_scopes(held, PLAN) == ["canada"]
    assert held.reason == "step 2 (usa) failed: 3/5 failed"
    assert t.entry.event == "checks_failed" and t.entry.actor == "controller"
    assert t.entry.figures == FAILED
    assert (t.entry.from_state, t.entry.to_state, t.entry.from_step, t.entry.to_step) == (
        S.PROGRESSING,
        S.STEPPED_BACK,
        1,
        0,
    )


def test_failed_checks_on_the_first_step_abort() -> None:
    t = fail(start(fresh(), PLAN, actor="alice").new)
    assert t.new.state is S.ABORTED
    assert t.new.steps == (P.FAILED, P.PENDING, P.PENDING)
    assert live_scopes(t.new, PLAN) == []


def test_promote_from_stepped_back_retries_the_step_after_the_held_one() -> None:
    held = fail(at_usa()).new
    retry = promote(held, PLAN, actor="carol").new
    assert (retry.state, retry.step) == (S.PROGRESSING, 1)
    assert retry.steps == (P.PASSED, P.PROGRESSING, P.PENDING)
    assert retry.attempt == held.attempt + 1 and retry.reason == ""


def test_promote_skips_the_rest_of_the_current_step() -> None:
    snap = start(fresh(), PLAN, actor="alice").new
    nxt = promote(snap, PLAN, actor="bob").new  # also approves the manual usa step
    assert (nxt.state, nxt.step, nxt.steps) == (
        S.PROGRESSING,
        1,
        (P.PASSED, P.PROGRESSING, P.PENDING),
    )


def test_full_promotion_starts_the_last_step_whose_checks_still_run() -> None:
    snap = start(fresh(), PLAN, actor="alice").new
    t = promote(snap, PLAN, actor="bob", full=True)
    assert (t.new.state, t.new.step) == (S.PROGRESSING, 2)
    assert t.new.steps == (P.PASSED, P.PASSED, P.PROGRESSING)
    assert t.entry.event == "promote_full"
    # a failure there steps back to the step before the last
    assert fail(t.new).new.step == 1


def test_promoting_the_last_step_succeeds() -> None:
    last = promote(at_usa(), PLAN, actor="bob").new
    assert last.step == 2
    done = promote(last, PLAN, actor="bob").new
    assert done.state is S.SUCCEEDED and done.steps == (P.PASSED,) * 3
    assert promote(last, PLAN, actor="bob", full=True).new.state is S.SUCCEEDED


def test_full_promotion_from_an_approval_wait_and_from_stepped_back() -> None:
    waiting = ok(start(fresh(), PLAN, actor="alice").new)
    t = promote(waiting, PLAN, actor="bob", full=True)
    assert (t.new.step, t.new.steps) == (2, (P.PASSED, P.PASSED, P.PROGRESSING))
    held = fail(at_usa()).new
    t = promote(held, PLAN, actor="bob", full=True)
    assert (t.new.step, t.new.steps) == (2, (P.PASSED, P.PASSED, P.PROGRESSING))


def test_pause_and_resume_restart_the_interrupted_step() -> None:
    snap = start(fresh(), PLAN, actor="alice").new
    paused = pause(snap, PLAN, actor="bob", reason="looking at\nlatency").new
    assert (paused.state, paused.step, paused.reason) == (
        S.PAUSED,
        0,
        "paused by bob: looking at latency",
    )
    assert live_scopes(paused, PLAN) == ["canada"]
    with pytest.raises(Conflict, match="it is paused at step 1 \\(canada\\)"):
        step_ready(paused, PLAN, step=0, attempt=paused.attempt)
    with pytest.raises(Conflict, match=r"only a progressing"):
        pause(paused, PLAN, actor="bob")
    resumed = resume(paused, PLAN, actor="bob").new
    assert (resumed.state, resumed.step, resumed.attempt) == (S.PROGRESSING, 0, 2)
    with pytest.raises(Conflict, match="stale result"):
        step_ready(resumed, PLAN, step=0, attempt=1)  # measured before the pause
    assert ok(resumed).step == 1


def test_a_pause_does_not_switch_off_the_safety_net() -> None:
    paused = pause(at_usa(), PLAN, actor="bob").new
    held = fail(paused).new
    assert (held.state, held.step) == (S.STEPPED_BACK, 0)


def test_no_checks_fail_while_waiting_for_approval() -> None:
    waiting = ok(start(fresh(), PLAN, actor="alice").new)
    with pytest.raises(Conflict, match="waiting for approval"):
        fail(waiting)


def test_results_for_another_step_or_attempt_are_stale() -> None:
    snap = at_usa()
    with pytest.raises(Conflict, match="step 1 attempt 1, but the rollout is at step 2"):
        step_ready(snap, PLAN, step=0, attempt=1)
    with pytest.raises(Conflict, match="stale"):
        checks_failed(snap, PLAN, step=1, attempt=99, figures={}, reason="x")


def test_step_back_by_a_person_goes_one_scope_at_a_time() -> None:
    snap = promote(at_usa(), PLAN, actor="bob").new  # progressing at all
    t = step_back(snap, PLAN, actor="dave", reason="errors in logs")
    assert (t.new.state, t.new.step) == (S.STEPPED_BACK, 1)
    assert t.new.steps == (P.PASSED, P.PASSED, P.ROLLED_BACK)
    assert t.new.reason == "stepped back by dave: errors in logs"
    assert live_scopes(t.new, PLAN) == ["canada", "usa"]
    t = step_back(t.new, PLAN, actor="dave")
    assert (t.new.state, t.new.step, live_scopes(t.new, PLAN)) == (S.STEPPED_BACK, 0, ["canada"])
    t = step_back(t.new, PLAN, actor="dave")
    assert t.new.state is S.ABORTED
    assert t.new.steps == (P.ROLLED_BACK,) * 3
    assert live_scopes(t.new, PLAN) == []


def test_step_back_while_waiting_for_approval_takes_back_the_live_scope() -> None:
    waiting = ok(start(fresh(), PLAN, actor="alice").new)
    t = step_back(waiting, PLAN, actor="dave")
    assert t.new.state is S.ABORTED
    assert t.new.steps == (P.ROLLED_BACK, P.PENDING, P.PENDING)


def test_a_manual_first_step_waits_unless_a_person_started_it() -> None:
    plan = load_plan("scopes: {a: [192.0.2.0/24]}\nsteps: [{scope: a, approve: manual}]\n")
    auto = start(fresh(plan), plan, actor="auto")
    assert (auto.new.state, auto.new.steps) == (S.PAUSED, (P.WAITING_APPROVAL,))
    assert live_scopes(auto.new, plan) == []
    assert promote(auto.new, plan, actor="eve").new.state is S.PROGRESSING
    assert step_back(auto.new, plan, actor="eve").new.state is S.ABORTED
    person = start(fresh(plan), plan, actor="eve", approved=True)
    assert person.new.state is S.PROGRESSING


def test_abort_puts_the_previous_release_everywhere() -> None:
    for snap in (fresh(), at_usa(), fail(at_usa()).new, ok(start(fresh(), PLAN, actor="a").new)):
        t = abort(snap, PLAN, actor="ops", reason="bad release")
        assert t.new.state is S.ABORTED
        assert t.new.reason == "aborted by ops: bad release"
        assert live_steps(t.new) == []
        assert P.PROGRESSING not in t.new.steps and P.WAITING_APPROVAL not in t.new.steps


EVENTS: dict[str, Callable[[RolloutSnapshot], Transition]] = {
    "start": lambda s: start(s, PLAN, actor="x"),
    "step_ready": lambda s: step_ready(s, PLAN, step=s.step, attempt=s.attempt),
    "checks_failed": fail,
    "promote": lambda s: promote(s, PLAN, actor="x"),
    "promote_full": lambda s: promote(s, PLAN, actor="x", full=True),
    "pause": lambda s: pause(s, PLAN, actor="x"),
    "resume": lambda s: resume(s, PLAN, actor="x"),
    "step_back": lambda s: step_back(s, PLAN, actor="x"),
    "abort": lambda s: abort(s, PLAN, actor="x"),
}


@pytest.mark.parametrize("event", sorted(EVENTS))
def test_terminal_states_refuse_everything(event: str) -> None:
    succeeded = promote(at_usa(), PLAN, actor="x", full=True).new
    succeeded = ok(succeeded)
    aborted = abort(at_usa(), PLAN, actor="x").new
    for snap, word in ((succeeded, "succeeded"), (aborted, "aborted")):
        with pytest.raises(Conflict) as info:
            EVENTS[event](snap)
        message = str(info.value)
        assert "\n" not in message and word in message and "rollout 7 (shop 1.4.2)" in message


@pytest.mark.parametrize(
    "event", ["step_ready", "checks_failed", "promote", "pause", "resume", "step_back"]
)
def test_a_pending_rollout_must_be_started_first(event: str) -> None:
    with pytest.raises(Conflict, match="it is pending at step 1"):
        EVENTS[event](fresh())


def test_transitions_are_compare_and_set() -> None:
    snap = fresh()
    t = start(snap, PLAN, actor="alice")
    assert (t.expected_state, t.expected_revision) == (S.PENDING, 0)
    assert t.new.revision == 1
    t2 = pause(t.new, PLAN, actor="bob")
    assert (t2.expected_state, t2.expected_revision, t2.new.revision) == (S.PROGRESSING, 1, 2)


def test_the_plan_must_be_the_rollouts_plan() -> None:
    other = load_plan("steps: [{scope: all}]\n")
    with pytest.raises(InvalidRequest, match="has 3 steps but the plan given has 1"):
        start(fresh(), other, actor="x")
    with pytest.raises(InvalidRequest):
        live_scopes(fresh(), other)


def test_snapshots_and_history_round_trip_as_json() -> None:
    t = fail(at_usa())
    assert RolloutSnapshot.from_dict(t.new.to_dict()) == t.new
    entry = t.entry.to_dict()
    assert entry["from_state"] == "progressing" and entry["to_state"] == "stepped_back"
    assert entry["figures"] == FAILED
    with pytest.raises(InvalidRequest):
        RolloutSnapshot.from_dict({"id": 1})
    with pytest.raises(InvalidRequest):
        RolloutSnapshot.from_dict({**t.new.to_dict(), "state": "flying"})
    with pytest.raises(InvalidRequest):
        RolloutSnapshot.from_dict({**t.new.to_dict(), "step": 5})


def _check_invariants(snap: RolloutSnapshot) -> None:
    steps, k = snap.steps, snap.step
    live = live_steps(snap)
    assert live == list(range(len(live))), steps  # live steps are always a prefix
    if snap.state in (S.PROGRESSING, S.PAUSED):
        assert all(s is P.PASSED for s in steps[:k]), steps
        assert steps[k] in (P.PROGRESSING, P.WAITING_APPROVAL), steps
        assert (steps[k] is P.WAITING_APPROVAL) == (
            snap.state is S.PAUSED and snap.waiting_approval
        )
        assert all(s is P.PENDING for s in steps[k + 1 :]), steps
    if snap.state is S.PROGRESSING:
        assert steps[k] is P.PROGRESSING
    if snap.state is S.STEPPED_BACK:
        assert live == list(range(k + 1)), steps
    if snap.state is S.SUCCEEDED:
        assert all(s is P.PASSED for s in steps)
    if snap.state in (S.ABORTED, S.PENDING):
        assert live == []


def test_random_event_sequences_keep_the_invariants() -> None:
    rng = random.Random(1234)
    names = sorted(EVENTS)
    for _ in range(300):
        snap = fresh()
        for _ in range(25):
            try:
                t = EVENTS[rng.choice(names)](snap)
            except Conflict as exc:
                assert "\n" not in str(exc)
                continue
            assert t.expected_revision == snap.revision and t.new.revision == snap.revision + 1
            assert t.entry.from_state is snap.state and t.entry.to_state is t.new.state
            snap = t.new
            _check_invariants(snap)
