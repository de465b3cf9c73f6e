"""Helpers of the rollout tests: a health endpoint on 127.0.0.1 and calls of the HTTP API.

The tests drive real processes (the session farm: API, Celery workers, dockerd; or a farm
of their own) and assert on the API's documents (``/api/v1/rollouts``, ``/deliver``,
builds and job logs). Every wait is bounded in time, every request loop in count.
"""

from __future__ import annotations

import importlib.util
import itertools
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.farmtest import BUSYBOX, Farm, Health, wait_for

FINAL_ROLLOUT = {"succeeded", "stepped_back", "aborted"}

# One fast job leaving one artifact, so /deliver has something to hand out.
PIPELINE = f"""\
image: {BUSYBOX}
stages: [build, deploy]
build:
  stage: build
  script:
    - mkdir -p out
    - echo "$CI_COMMIT_SHA" > out/commit.txt
  artifacts:
    paths: [out/]
"""

CANADA_V4 = "198.51.100.7"
CANADA_V6 = "2001:db8:ca::1"
USA = "203.0.113.9"
EUROPE_V4 = "192.0.2.1"
EUROPE_V6 = "2001:db8:e0::1"  # ("2001:db8:eu::1" is no address: u is not hex)


def unique(name: str) -> str:
    """A project name no other test of the session uses (the session farm's DB is shared)."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


def http_check(health: Health, samples: int = 3) -> str:
    """YAML of one http check against ``health`` (indented for a step's ``checks:``)."""
    return (
        f'      - http: "{health.url()}"\n'
        f"        samples: {samples}\n"
        "        interval: 0.05\n"
        "        timeout: 2\n"
        "        max_failure_ratio: 0.2\n"
    )


# --- talking to a farm ------------------------------------------------------------------


def api(farm: Farm) -> httpx.Client:
    """A keep-alive client of the farm's API (use as a context manager)."""
    return farm.http


def green_build(farm: Farm, repo: Path, ref: str = "main", timeout: float = 120) -> dict[str, Any]:
    """Submit ``repo`` at ``ref`` and wait for it to succeed; the final build document."""
    build = farm.submit(repo, ref=ref)
    done = farm.wait(build["id"], timeout=timeout)
    assert done["status"] == "success", done
    return done


def release(http: httpx.Client, build_id: int, version: str) -> dict[str, Any]:
    """Release a green build as ``version`` (201)."""
    resp = http.post("/api/v1/releases", json={"build": build_id, "version": version})
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def start_rollout(
    http: httpx.Client, project: str, version: str, actor: str = "ann"
) -> dict[str, Any]:
    """A person starts rolling ``version`` out (201); the rollout document."""
    resp = http.post(
        "/api/v1/rollouts", json={"project": project, "version": version, "actor": actor}
    )
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def command(
    http: httpx.Client, rid: int, action: str, actor: str = "ann", expect: int = 200
) -> dict[str, Any]:
    """POST a person's command (promote, pause, resume, step-back, abort)."""
    resp = http.post(f"/api/v1/rollouts/{rid}/{action}", json={"actor": actor})
    assert resp.status_code == expect, f"{action}: {resp.status_code} {resp.text}"
    return dict(resp.json())


def rollout(http: httpx.Client, rid: int) -> dict[str, Any]:
    resp = http.get(f"/api/v1/rollouts/{rid}")
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def rollouts_of(http: httpx.Client, project: str) -> list[dict[str, Any]]:
    resp = http.get("/api/v1/rollouts", params={"project": project})
    assert resp.status_code == 200, resp.text
    return list(resp.json())


def wait_rollout(
    http: httpx.Client,
    rid: int,
    until: Callable[[dict[str, Any]], bool] | set[str],
    timeout: float = 60,
) -> dict[str, Any]:
    """Poll the rollout document until ``until`` (a set of states, or a predicate) holds."""
    ok = (lambda d: d["state"] in until) if isinstance(until, set) else until
    deadline = time.monotonic() + timeout
    while True:
        doc = rollout(http, rid)
        if ok(doc):
            return doc
        if time.monotonic() > deadline:
            raise AssertionError(f"rollout {rid} did not get there in {timeout}s: {doc}")
        time.sleep(0.1)


def version_for(http: httpx.Client, project: str, ip: str) -> str | None:
    """What ``/deliver`` hands the client at ``ip``."""
    resp = http.get(f"/api/v1/deliver/{project}", params={"ip": ip})
    assert resp.status_code == 200, resp.text
    return resp.json()["version"]  # type: ignore[no-any-return]


def events(doc: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """History lines of one event kind, oldest first."""
    return [h for h in doc["history"] if h["event"] == name]


def assert_history_chains(doc: dict[str, Any]) -> None:
    """Every history line starts where the one before ended: no transition was lost."""
    history = doc["history"]
    for before, after in itertools.pairwise(history):
        assert (after["from"], after["from_step"]) == (before["to"], before["to_step"]), (
            f"history of rollout {doc['id']} does not chain: {before} then {after}"
        )
    assert doc["revision"] == len(history), (doc["revision"], len(history))


def start_api(farm: Farm, name: str) -> None:
    """Start ``farm api`` as process ``name`` and wait until it answers /healthz."""
    proc = farm.start(name, "api")
    wait_for(lambda: healthy(farm.url) or proc.popen.poll() is not None, 60, f"the API ({name})")
    assert proc.popen.poll() is None, proc.log.read_text(errors="replace")[-4000:]


def healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def cli_rollout_exists() -> bool:
    """Whether ``farm rollout`` (farm/cli/rollout.py) is there to be run."""
    return importlib.util.find_spec("farm.cli.rollout") is not None
