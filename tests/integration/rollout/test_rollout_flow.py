"""Staged rollouts end to end on the session farm: real API process, Celery workers, dockerd.

1. canada → usa → all of 1.1.0 over 1.0.0 with the health endpoint failing for ``usa``:
   stepped back and held at canada; who gets which version; the history names the check
   and its figures; a person's promote retries usa (fails again), abort gives everyone
   1.0.0 back.
2. Continuous deployment: a green build on ``main`` is released as ``main-<build>`` and
   rolled out by itself; one on ``feature`` is not. The plan's deploy job runs once per
   step as a child build with the rollout's variables; a failing one fails its step.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from tests.farmtest import Farm, Health, commit_files, git, make_repo
from tests.integration.rollout.rollouttest import (
    CANADA_V4,
    CANADA_V6,
    EUROPE_V4,
    EUROPE_V6,
    FINAL_ROLLOUT,
    PIPELINE,
    USA,
    api,
    assert_history_chains,
    cli_rollout_exists,
    command,
    events,
    green_build,
    http_check,
    release,
    rollouts_of,
    start_rollout,
    unique,
    version_for,
    wait_rollout,
)

SCOPES = """\
scopes:
  canada: [198.51.100.0/24, "2001:db8:ca::/48"]
  usa: [203.0.113.0/24]
"""


def three_steps(health: Health) -> str:
    """canada → usa → all, each of the first two checked against ``health``."""
    return (
        SCOPES
        + "steps:\n"
        + "  - scope: canada\n    bake: 0\n    checks:\n"
        + http_check(health)
        + "  - scope: usa\n    bake: 0\n    checks:\n"
        + http_check(health)
        + "  - scope: all\n"
    )


def who_gets(http: httpx.Client, project: str) -> dict[str, str | None]:
    """The version each of our five sample clients gets."""
    clients = {
        "canada v4": CANADA_V4,
        "canada v6": CANADA_V6,
        "usa": USA,
        "europe v4": EUROPE_V4,
        "europe v6": EUROPE_V6,
    }
    return {name: version_for(http, project, ip) for name, ip in clients.items()}


def test_three_step_rollout_steps_back_to_canada_and_abort_restores_everyone(
    farm: Farm, tmp_path: Path, health: Health
) -> None:
    project = unique("shop")
    repo = make_repo(
        tmp_path / project, {".farm-ci.yml": PIPELINE, ".farm/rollout.yml": three_steps(health)}
    )
    with api(farm) as http:
        first = green_build(farm, repo)
        release(http, first["id"], "1.0.0")
        commit_files(repo, {"VERSION": "1.1.0\n"}, "1.1.0")
        second = green_build(farm, repo)
        release(http, second["id"], "1.1.0")

        # 1.0.0 goes out fully while everything is healthy
        doc = start_rollout(http, project, "1.0.0")
        doc = wait_rollout(http, doc["id"], FINAL_ROLLOUT)
        assert doc["state"] == "succeeded", doc
        assert [s["state"] for s in doc["steps"]] == ["passed", "passed", "passed"]
        assert set(who_gets(http, project).values()) == {"1.0.0"}

        # 1.1.0: usa's health fails, so the rollout steps back and holds at canada
        health.sick = {"usa"}
        doc = start_rollout(http, project, "1.1.0", actor="ann")
        rid = doc["id"]
        assert doc["previous_version"] == "1.0.0"
        doc = wait_rollout(http, rid, FINAL_ROLLOUT)
        assert doc["state"] == "stepped_back", doc
        assert doc["steps"][doc["step"]]["scope"] == "canada"
        assert [(s["scope"], s["state"], s["version"]) for s in doc["steps"]] == [
            ("canada", "passed", "1.1.0"),
            ("usa", "failed", "1.0.0"),
            ("all", "pending", "1.0.0"),
        ]
        assert who_gets(http, project) == {
            "canada v4": "1.1.0",
            "canada v6": "1.1.0",
            "usa": "1.0.0",
            "europe v4": "1.0.0",
            "europe v6": "1.0.0",
        }
        answer = http.get(f"/api/v1/deliver/{project}", params={"ip": CANADA_V6}).json()
        assert answer["scope"] == "canada" and answer["rollout"] == rid, answer
        assert answer["artifacts"] and all(a["digest"] for a in answer["artifacts"]), answer
        # the history names the check that failed, with its figures
        (failed,) = events(doc, "checks_failed")
        assert failed["actor"] == "controller"
        assert (failed["from"], failed["to"]) == ("progressing", "stepped_back")
        assert (failed["from_step"], failed["to_step"]) == (1, 0)
        assert "usa" in failed["reason"] and "3/3 failed" in failed["reason"], failed
        (check,) = failed["figures"]["checks"]
        assert check["failures"] == 3 and check["samples"] == 3, check
        assert "scope=usa" in str(check), check
        assert doc["reason"] == failed["reason"]
        assert [e["event"] for e in doc["history"]] == ["start", "step_ready", "checks_failed"]
        assert doc["history"][0]["actor"] == "ann"
        assert_history_chains(doc)
        # canada was probed and passed: 1.1.0 reached the health endpoint for both scopes
        assert health.count("canada") >= 6 and health.count("usa") >= 6  # both rollouts

        if cli_rollout_exists():  # the CLI shows the same tree, and says it did not succeed
            status = farm.cli("rollout", "status", str(rid))
            print(status.stdout)
            assert status.returncode == 1, (status.returncode, status.stdout, status.stderr)
            for words in ("stepped_back", "canada", "usa", "1.1.0", "1.0.0", "3/3 failed"):
                assert words in status.stdout, (words, status.stdout)
            as_json = farm.cli("rollout", "status", str(rid), "--json")
            assert as_json.returncode == 1, as_json
            assert json.loads(as_json.stdout)["state"] == "stepped_back", as_json.stdout

        # a person retries usa: still sick, so it steps back to canada again
        usa_probes = health.count("usa")
        doc = command(http, rid, "promote", actor="bob")
        assert (doc["state"], doc["step"]) == ("progressing", 1), doc
        assert doc["steps"][1]["state"] == "progressing"
        doc = wait_rollout(http, rid, lambda d: len(events(d, "checks_failed")) == 2)
        assert doc["state"] == "stepped_back" and doc["step"] == 0, doc
        assert health.count("usa") >= usa_probes + 3
        promote = events(doc, "promote")
        assert [(e["actor"], e["from"], e["to"]) for e in promote] == [
            ("bob", "stepped_back", "progressing")
        ]
        assert "3/3 failed" in events(doc, "checks_failed")[1]["reason"]
        assert who_gets(http, project)["canada v4"] == "1.1.0"
        assert who_gets(http, project)["usa"] == "1.0.0"

        # abort: every scope gets 1.0.0 back
        doc = command(http, rid, "abort", actor="carol")
        assert doc["state"] == "aborted", doc
        assert all(s["version"] == "1.0.0" for s in doc["steps"]), doc["steps"]
        assert set(who_gets(http, project).values()) == {"1.0.0"}
        doc = wait_rollout(http, rid, {"aborted"})
        assert_history_chains(doc)
        assert doc["history"][-1]["actor"] == "carol"
        # aborted is final: nothing can move it any more
        command(http, rid, "promote", expect=409)
        listed = rollouts_of(http, project)
        assert [(r["version"], r["state"]) for r in listed] == [
            ("1.1.0", "aborted"),
            ("1.0.0", "succeeded"),
        ]


# --- continuous deployment --------------------------------------------------------------

DEPLOY_PIPELINE = (
    PIPELINE
    + """\
deploy:
  stage: deploy
  when: manual
  script:
    - echo "deploying $FARM_ROLLOUT_SCOPE $FARM_RELEASE_VERSION $FARM_PREVIOUS_VERSION
      $FARM_ROLLOUT_CIDRS"
"""
)

# First commit: one step straight to everyone, no deploy job (quick; it makes a previous)
CD_FIRST = """\
scopes:
  canada: [198.51.100.0/24, "2001:db8:ca::/48"]
  usa: [203.0.113.0/24]
steps:
  - scope: all
auto: {branches: [main]}
"""

CD_PLAN = (
    SCOPES
    + """\
steps:
  - scope: canada
  - scope: usa
  - scope: all
deploy_job: deploy
auto: {branches: [main]}
"""
)


def cd_rollout(http: httpx.Client, project: str, version: str, timeout: float = 20) -> Any:
    """The rollout continuous deployment started for ``version`` (waits for it to appear)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in rollouts_of(http, project) if r["version"] == version]
        if found:
            return found[0]
        assert time.monotonic() < deadline, (version, rollouts_of(http, project))
        time.sleep(0.1)


def child_builds(farm: Farm, http: httpx.Client, project: str, job: str) -> list[dict[str, Any]]:
    """The builds that ran only ``job`` (a rollout's deploy jobs), oldest first."""
    listed = http.get("/api/v1/builds", params={"project": project, "limit": 100}).json()
    builds = [farm.build(b["id"]) for b in listed]
    return sorted(
        (b for b in builds if [j["name"] for j in b["jobs"]] == [job]), key=lambda b: b["id"]
    )


def test_green_build_on_main_is_released_and_rolled_out_by_itself_with_deploy_jobs(
    farm: Farm, tmp_path: Path
) -> None:
    project = unique("cd")
    repo = make_repo(
        tmp_path / project, {".farm-ci.yml": DEPLOY_PIPELINE, ".farm/rollout.yml": CD_FIRST}
    )
    with api(farm) as http:
        first = green_build(farm, repo)
        v1 = f"main-{first['id']}"
        doc = cd_rollout(http, project, v1)
        assert doc["actor"] == "continuous-deployment"
        doc = wait_rollout(http, doc["id"], FINAL_ROLLOUT)
        assert doc["state"] == "succeeded", doc
        assert doc["history"][0]["actor"] == "continuous-deployment"
        assert http.get(f"/api/v1/releases/{project}/{v1}").json()["build"] == first["id"]

        # the next commit on main: released and rolled out step by step, a deploy per step
        commit_files(repo, {".farm/rollout.yml": CD_PLAN, "VERSION": "2\n"}, "deploy job")
        second = green_build(farm, repo)
        deploy = [j for j in second["jobs"] if j["name"] == "deploy"]
        assert deploy and deploy[0]["status"] == "manual", second["jobs"]  # not run by the build
        v2 = f"main-{second['id']}"
        doc = cd_rollout(http, project, v2)
        assert doc["actor"] == "continuous-deployment" and doc["deploy_job"] == "deploy"
        doc = wait_rollout(http, doc["id"], FINAL_ROLLOUT, timeout=90)
        assert doc["state"] == "succeeded", doc
        assert doc["previous_version"] == v1
        assert_history_chains(doc)
        assert {version_for(http, project, ip) for ip in (CANADA_V4, USA, "192.0.2.1")} == {v2}

        children = child_builds(farm, http, project, "deploy")
        assert len(children) == 3, [(b["id"], b["status"]) for b in children]  # once per step
        logs = []
        for child in children:
            assert child["status"] == "success", child
            assert child["commit"] == second["commit"]
            logs.append(farm.log(child["jobs"][0]["id"]))
        assert f"deploying canada {v2} {v1} 198.51.100.0/24 2001:db8:ca::/48" in logs[0], logs[0]
        assert f"deploying usa {v2} {v1} 203.0.113.0/24" in logs[1], logs[1]
        assert f"deploying all {v2} {v1} 0.0.0.0/0 ::/0" in logs[2], logs[2]
        # one fresh container each: three jobs, three attempts, none shared
        assert len({c["jobs"][0]["id"] for c in children}) == 3

        # a green build on another branch releases nothing and starts nothing
        git(repo, "checkout", "-q", "-b", "feature")
        commit_files(repo, {"FEATURE": "x\n"}, "feature work")
        before = rollouts_of(http, project)
        other = green_build(farm, repo, ref="feature")
        assert other["ref"] == "feature"
        time.sleep(1.5)  # the hook runs when the build finishes; give it ample time
        assert rollouts_of(http, project) == before
        versions = [r["version"] for r in http.get(f"/api/v1/releases?project={project}").json()]
        assert not any(v.startswith("feature") for v in versions), versions
        assert sorted(versions) == sorted([v1, v2])


FAILING_DEPLOY_PIPELINE = (
    PIPELINE
    + """\
deploy:
  stage: deploy
  when: manual
  script:
    - echo "deploying $FARM_ROLLOUT_SCOPE"
    - test "$FARM_ROLLOUT_SCOPE" != "$BROKEN_SCOPE"
"""
)


def test_a_failing_deploy_job_fails_its_step(farm: Farm, tmp_path: Path) -> None:
    """usa's deploy fails → stepped back at canada; canada's fails → nothing passed → aborted."""
    project = unique("deployfail")
    plan = (
        SCOPES + "steps:\n  - scope: canada\n  - scope: usa\n  - scope: all\ndeploy_job: deploy\n"
    )
    repo = make_repo(
        tmp_path / project,
        {".farm-ci.yml": FAILING_DEPLOY_PIPELINE, ".farm/rollout.yml": plan},
    )
    with api(farm) as http:
        builds = {}
        for version, broken in (("1.0.0", "usa"), ("2.0.0", "canada")):
            pipeline = FAILING_DEPLOY_PIPELINE.replace("$BROKEN_SCOPE", broken)
            commit_files(repo, {".farm-ci.yml": pipeline}, f"deploy breaks {broken}")
            builds[version] = green_build(farm, repo)
            release(http, builds[version]["id"], version)

        doc = start_rollout(http, project, "1.0.0")
        doc = wait_rollout(http, doc["id"], FINAL_ROLLOUT, timeout=60)
        assert doc["state"] == "stepped_back" and doc["step"] == 0, doc
        assert [s["state"] for s in doc["steps"]] == ["passed", "failed", "pending"]
        (failed,) = events(doc, "checks_failed")
        assert "deploy job deploy" in failed["reason"] and "failed" in failed["reason"], failed
        assert failed["figures"]["deploy_job"] == "deploy"
        usa_deploy = farm.build(failed["figures"]["build"])
        assert usa_deploy["status"] == "failed"
        assert "deploying usa" in farm.log(usa_deploy["jobs"][0]["id"])
        assert version_for(http, project, CANADA_V4) == "1.0.0"
        assert version_for(http, project, USA) is None  # there is no older release
        command(http, doc["id"], "abort")

        doc = start_rollout(http, project, "2.0.0")
        doc = wait_rollout(http, doc["id"], FINAL_ROLLOUT, timeout=60)
        assert doc["state"] == "aborted", doc  # the first step failed: nothing to hold
        assert [e["event"] for e in doc["history"]] == ["start", "checks_failed"]
        assert "deploy job deploy" in doc["history"][-1]["reason"]
        # 2.0.0's previous version is the older release, 1.0.0: everyone keeps that
        assert doc["previous_version"] == "1.0.0"
        assert {version_for(http, project, ip) for ip in (CANADA_V4, USA)} == {"1.0.0"}
