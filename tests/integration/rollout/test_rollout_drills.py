"""Rollout drills through real processes.

3. SIGKILL the API process mid-bake and start it again on the same data dir and port:
   the rollout resumes where it was (the bake's end survived) and succeeds, no step twice.
4. Concurrent commands: ``promote`` and ``step-back`` released together on one rollout,
   many rounds: one wins and the other gets 409, or the two ran one after the other and
   both were allowed (the history shows them in sequence); two concurrent starts of one
   project: one 201, one 409.
5. Bad plans: overlapping or invalid CIDRs, an unknown scope, empty steps → 422 naming
   ``.farm/rollout.yml:LINE``, and no rollout exists afterwards.
"""

from __future__ import annotations

import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.farmtest import Farm, Health, make_repo
from tests.integration.rollout.rollouttest import (
    CANADA_V4,
    FINAL_ROLLOUT,
    PIPELINE,
    USA,
    api,
    assert_history_chains,
    command,
    events,
    green_build,
    http_check,
    release,
    rollout,
    rollouts_of,
    start_api,
    start_rollout,
    unique,
    version_for,
    wait_rollout,
)

# --- 3. restart mid-bake -------------------------------------------------------------------

BAKE = 6.0
KILL_AFTER = BAKE / 2


def test_api_killed_mid_bake_resumes_the_rollout_where_it_was(
    private_farm: Farm, tmp_path: Path, health: Health
) -> None:
    farm = private_farm
    plan = (
        "scopes:\n"
        "  canada: [198.51.100.0/24]\n"
        "  usa: [203.0.113.0/24]\n"
        "steps:\n"
        f"  - scope: canada\n    bake: {BAKE}\n    checks:\n"
        + http_check(health, samples=2)
        + "  - scope: usa\n    bake: 1\n    checks:\n"
        + http_check(health, samples=2)
        + "  - scope: all\n"
    )
    project = unique("restart")
    repo = make_repo(tmp_path / project, {".farm-ci.yml": PIPELINE, ".farm/rollout.yml": plan})
    with api(farm) as http:
        release(http, green_build(farm, repo)["id"], "1.0.0")
        doc = start_rollout(http, project, "1.0.0")
        rid = doc["id"]
        assert (doc["state"], doc["step"], doc["phase"]) == ("progressing", 0, "bake"), doc
        bake_until = doc["phase_until"]
        assert bake_until is not None
        started = datetime.fromisoformat(doc["history"][0]["at"])
        until = datetime.fromisoformat(bake_until)
        assert BAKE - 1 < (until - started).total_seconds() <= BAKE + 1, (started, until)

    # kill it halfway through the bake
    time.sleep(max(0.0, KILL_AFTER - (datetime.now(UTC) - started).total_seconds()))
    victim = next(p for p in farm.procs if p.name == "api")
    victim.popen.send_signal(signal.SIGKILL)
    victim.popen.wait(10)
    killed = datetime.now(UTC)
    assert killed < until, "the API was killed after the bake had ended: the drill is void"
    start_api(farm, "api-restarted")
    restarted = datetime.now(UTC)
    restart_took = (restarted - killed).total_seconds()

    with api(farm) as http:
        doc = rollout(http, rid)
        print(f"API restarted in {restart_took:.1f}s; rollout then: {doc['phase']} {doc['step']}")
        if restarted < until - timedelta(seconds=1):  # the bake must still be under way
            assert (doc["state"], doc["step"], doc["phase"]) == ("progressing", 0, "bake"), doc
            assert doc["phase_until"] == bake_until, (bake_until, doc)  # not re-armed
            assert health.count("canada") == 0  # nothing was checked before the bake ended
        doc = wait_rollout(http, rid, FINAL_ROLLOUT, timeout=60)
        assert doc["state"] == "succeeded", doc

    assert [e["event"] for e in doc["history"]] == [
        "start",
        "step_ready",
        "step_ready",
        "step_ready",
    ]
    assert [e["from_step"] for e in events(doc, "step_ready")] == [0, 1, 2]
    assert doc["attempt"] == 3, doc  # every step entered progressing exactly once
    assert_history_chains(doc)
    # canada passed when the bake begun before the kill ended (or as soon as the API was
    # back), plus checks and ticks: a bake started again from zero would be >= 3 s later
    canada_passed = datetime.fromisoformat(events(doc, "step_ready")[0]["at"])
    late = (canada_passed - max(until, restarted)).total_seconds()
    assert late < 1.5, f"canada passed {late:.1f}s after its bake should have ended"
    # checks ran once per step: no probe was repeated after the restart
    assert (health.count("canada"), health.count("usa")) == (2, 2), health.hits
    total = (datetime.fromisoformat(doc["updated_at"]) - started).total_seconds()
    assert total < BAKE + 1 + restart_took + 3, total


# --- 4. concurrency ------------------------------------------------------------------------

RACE_PLAN = """\
scopes:
  a: [198.51.100.0/26]
  b: [198.51.100.64/26]
  c: [198.51.100.128/26]
  d: [198.51.100.192/26]
steps:
  - {scope: a, bake: 3600}
  - {scope: b, bake: 3600}
  - {scope: c, bake: 3600}
  - {scope: d, bake: 3600}
  - {scope: all, bake: 3600}
"""
HOME = 2  # rounds start around the middle step, so no outcome can be terminal
ROUNDS = 21


def _normalize(http: httpx.Client, rid: int, state: str) -> dict[str, Any]:
    """Bring the rollout to ``state`` at step HOME with sequential, allowed commands."""
    target = HOME + 1 if state == "stepped_back" else HOME
    for _ in range(12):
        doc = rollout(http, rid)
        s, step = doc["state"], doc["step"]
        if s == "progressing" and step == target:
            break
        if s == "stepped_back":
            command(http, rid, "promote" if step + 1 <= target else "step-back", actor="setup")
        elif step < target:
            command(http, rid, "promote", actor="setup")
        elif step > target:
            command(http, rid, "step-back", actor="setup")
        else:  # paused at the target step
            command(http, rid, "resume", actor="setup")
    else:
        raise AssertionError(f"could not bring rollout {rid} to step {target}: {doc}")
    if state == "paused":
        doc = command(http, rid, "pause", actor="setup")
    elif state == "stepped_back":
        doc = command(http, rid, "step-back", actor="setup")
    assert (doc["state"], doc["step"]) == (state, HOME), doc
    return doc


def _race(farm: Farm, rid: int) -> dict[str, httpx.Response]:
    """``promote`` and ``step-back`` on two threads released by one barrier."""
    barrier = threading.Barrier(2)
    answers: dict[str, httpx.Response] = {}
    errors: list[BaseException] = []
    clients = {a: farm.http for a in ("promote", "step-back")}

    def send(action: str) -> None:
        try:
            clients[action].get("/healthz")  # connect first: the race is in the request
            barrier.wait(10)
            answers[action] = clients[action].post(
                f"/api/v1/rollouts/{rid}/{action}", json={"actor": f"racer-{action}"}
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(a,)) for a in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for c in clients.values():
        c.close()
    assert not errors, errors
    return answers


def test_concurrent_promote_and_step_back_one_wins_the_other_gets_409(
    farm: Farm, tmp_path: Path
) -> None:
    """States where both commands are allowed: progressing, paused (by a person) and
    stepped_back. From each, after either command the other is still allowed (the rounds
    stay between steps 1 and 3 of 5), so a 409 can only mean "lost the race", and two 200s
    mean the second request read the first one's result: the history must show them in
    sequence (each line starts where the one before ended) and the revision count both."""
    project = unique("race")
    repo = make_repo(tmp_path / project, {".farm-ci.yml": PIPELINE, ".farm/rollout.yml": RACE_PLAN})
    outcomes: dict[str, int] = {"race": 0, "sequential": 0}
    with api(farm) as http:
        release(http, green_build(farm, repo)["id"], "1.0.0")
        rid = start_rollout(http, project, "1.0.0")["id"]
        for i in range(ROUNDS):
            state = ("progressing", "paused", "stepped_back")[i % 3]
            before = _normalize(http, rid, state)
            answers = _race(farm, rid)
            codes = {a: r.status_code for a, r in answers.items()}
            after = rollout(http, rid)
            assert_history_chains(after)
            assert set(codes.values()) <= {200, 409}, {a: r.text for a, r in answers.items()}
            winners = [a for a, c in codes.items() if c == 200]
            assert winners, f"round {i} ({state}): nobody won: {codes}"
            assert after["revision"] == before["revision"] + len(winners), (codes, after)
            racers = [h for h in after["history"] if h["actor"].startswith("racer-")]
            if len(winners) == 1:
                outcomes["race"] += 1
                (loser,) = set(codes) - set(winners)
                detail = answers[loser].json()["detail"]
                assert "changed while" in detail, detail  # lost the race, not refused
                won = answers[winners[0]].json()
                assert (after["state"], after["step"]) == (won["state"], won["step"])
                assert racers[-1]["actor"] == f"racer-{winners[0]}"
                assert after["history"][-1]["actor"] == f"racer-{winners[0]}"
            else:
                outcomes["sequential"] += 1
                last_two = after["history"][-2:]
                assert {h["actor"] for h in last_two} == {"racer-promote", "racer-step-back"}
                assert (last_two[0]["from"], last_two[0]["from_step"]) == (state, HOME)
        command(http, rid, "abort")
    print(f"promote vs step-back over {ROUNDS} rounds: {outcomes}")
    assert outcomes["race"] >= 1, f"no round ever raced (all sequential): {outcomes}"


def test_two_concurrent_starts_of_one_project_one_201_one_409(farm: Farm, tmp_path: Path) -> None:
    project = unique("twostarts")
    repo = make_repo(tmp_path / project, {".farm-ci.yml": PIPELINE, ".farm/rollout.yml": RACE_PLAN})
    rounds = 8
    with api(farm) as http:
        release(http, green_build(farm, repo)["id"], "1.0.0")
        for i in range(rounds):
            barrier = threading.Barrier(2)
            answers: list[httpx.Response] = []
            errors: list[BaseException] = []

            def post(
                actor: str,
                barrier: threading.Barrier = barrier,
                answers: list[httpx.Response] = answers,
                errors: list[BaseException] = errors,
            ) -> None:
                try:
                    with farm.http as c:
                        c.get("/healthz")
                        barrier.wait(10)
                        answers.append(
                            c.post(
                                "/api/v1/rollouts",
                                json={"project": project, "version": "1.0.0", "actor": actor},
                            )
                        )
                except BaseException as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=post, args=(f"p{n}",)) for n in (1, 2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert not errors, errors
            codes = sorted(r.status_code for r in answers)
            assert codes == [201, 409], [(r.status_code, r.text) for r in answers]
            (won,) = [r.json() for r in answers if r.status_code == 201]
            (lost,) = [r.json() for r in answers if r.status_code == 409]
            assert "active rollout" in lost["detail"], lost
            listed = rollouts_of(http, project)
            assert len(listed) == i + 1, listed  # the refused start left nothing behind
            assert [r["id"] for r in listed if r["state"] not in ("aborted",)] == [won["id"]]
            command(http, won["id"], "abort")
        assert {r["state"] for r in rollouts_of(http, project)} == {"aborted"}


# --- 5. bad input --------------------------------------------------------------------------

BAD_PLANS = {
    # name: (plan, line the error must name, words it must say)
    "overlapping CIDRs": (
        "scopes:\n"
        "  canada: [198.51.100.0/24]\n"
        "  usa: [203.0.113.0/24, 198.51.100.128/25]\n"
        "steps:\n  - scope: canada\n  - scope: usa\n",
        3,
        "overlaps",
    ),
    "invalid CIDR": (
        "scopes:\n"
        "  canada: [198.51.100.0/24]\n"
        '  usa: ["203.0.113.300/24"]\n'
        "steps:\n  - scope: canada\n  - scope: usa\n",
        3,
        "not a CIDR",
    ),
    "unknown scope": (
        "scopes:\n"
        "  canada: [198.51.100.0/24]\n"
        "steps:\n  - scope: canada\n  - scope: mexico\n  - scope: all\n",
        5,
        "mexico",
    ),
    "empty steps": (
        "scopes:\n  canada: [198.51.100.0/24]\nsteps: []\n",
        3,
        "steps",
    ),
}


def test_bad_plans_are_refused_with_file_and_line_and_start_nothing(
    farm: Farm, tmp_path: Path
) -> None:
    projects = {name: unique("badplan") for name in BAD_PLANS}
    builds = {}
    for name, (plan, _, _) in BAD_PLANS.items():
        repo = make_repo(
            tmp_path / projects[name], {".farm-ci.yml": PIPELINE, ".farm/rollout.yml": plan}
        )
        builds[name] = farm.submit(repo)  # all at once: the workers build them in parallel
    problems = []
    with api(farm) as http:
        for name, (_, line, words) in BAD_PLANS.items():
            project = projects[name]
            done = farm.wait(builds[name]["id"], timeout=120)
            assert done["status"] == "success", done
            release(http, done["id"], "1.0.0")
            resp = http.post("/api/v1/rollouts", json={"project": project, "version": "1.0.0"})
            body = resp.json()
            if resp.status_code != 422 or body.get("error") != "PlanError":
                problems.append(f"{name}: {resp.status_code} {resp.text}")
                continue
            if f".farm/rollout.yml:{line}:" not in body["detail"] or words not in body["detail"]:
                problems.append(f"{name}: wanted .farm/rollout.yml:{line} and {words!r}: {body}")
            if rollouts_of(http, project) != []:
                problems.append(f"{name}: a rollout was created: {rollouts_of(http, project)}")
            # nothing started: every client still gets the release, as without any rollout
            answer = http.get(f"/api/v1/deliver/{project}", params={"ip": CANADA_V4}).json()
            if (answer["version"], answer["rollout"]) != ("1.0.0", None):
                problems.append(f"{name}: deliver answers {answer}")
            if version_for(http, project, USA) != "1.0.0":
                problems.append(f"{name}: deliver changed for {USA}")
    assert not problems, "\n".join(problems)
