"""The job result key changes with every input a job can see, and only with those."""

from __future__ import annotations

import dataclasses
from typing import Any

from farm.domain.result_key import never_cached, result_key
from farm.domain.specs import EnvironmentSpec, JobSpec
from farm.domain.timeline import merge, overhead, slices

SPEC = JobSpec(name="test", stage="test", script=("make test",), image="busybox:1", line=3)
BASE: dict[str, Any] = {
    "project": "p",
    "repo": "/r",
    "ref": "main",
    "commit": "c" * 40,
    "source": "api",
    "build_variables": {},
    "snapshot_digest": "sha256:" + "1" * 64,
    "inputs": [("build", "build", "archive", "sha256:" + "2" * 64)],
}


def key(spec: JobSpec = SPEC, **changes: Any) -> str:
    return result_key(spec, **{**BASE, **changes})


def test_each_input_changes_the_key() -> None:
    first = key()
    assert key() == first
    assert key(dataclasses.replace(SPEC, image="busybox:2")) != first
    assert key(dataclasses.replace(SPEC, script=("make check",))) != first
    assert key(dataclasses.replace(SPEC, variables={"A": "1"})) != first
    assert key(build_variables={"A": "1"}) != first
    assert key(snapshot_digest="sha256:" + "3" * 64) != first
    assert key(inputs=[("build", "build", "archive", "sha256:" + "4" * 64)]) != first
    assert key(inputs=[]) != first
    assert key(commit="d" * 40) != first
    assert key(ref="other") != first


def test_what_changes_nothing_in_the_container_keeps_the_key() -> None:
    first = key()
    assert key(dataclasses.replace(SPEC, line=99)) == first
    assert key(dataclasses.replace(SPEC, allow_failure=True)) == first
    assert key(inputs=list(reversed(BASE["inputs"]))) == first


def test_never_cached() -> None:
    def why(spec: JobSpec, **kw: Any) -> str | None:
        args: dict[str, Any] = {"build_variables": {}, "has_secrets": False, "child_build": False}
        return never_cached(spec, **{**args, **kw})

    assert why(SPEC) is None
    assert why(dataclasses.replace(SPEC, when="manual")) == "manual job"
    assert why(dataclasses.replace(SPEC, environment=EnvironmentSpec(name="prod"))) == "deploy job"
    assert why(SPEC, child_build=True) == "deploy job"
    assert why(SPEC, has_secrets=True) == "secrets"
    assert why(SPEC, build_variables={"FARM_CACHE_RESULT": "false"}) == "opted out"
    assert why(dataclasses.replace(SPEC, variables={"FARM_CACHE_RESULT": "no"})) == "opted out"


def test_timeline_slices() -> None:
    marks = merge(
        {
            "worker_claimed": 1.01,
            "inputs_ready": 1.05,
            "container_create": 1.05,
            "container_started": 1.25,
            "container_exited": 2.25,
            "outputs_stored": 2.3,
            "bogus": 9.0,
        },
        queued=1.0,
        claimed=1.01,
        reported=2.32,
        next_dispatched=2.34,
    )
    assert "bogus" not in marks and next(iter(marks)) == "queued"
    parts = slices(marks)
    assert round(parts["run"], 3) == 1.0 and round(parts["create"], 3) == 0.2
    assert round(overhead(marks) or 0, 3) == 0.34
