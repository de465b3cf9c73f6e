"""Critical-path-first dispatch (issue 11): a batch of ready jobs is sent longest
remaining path first, with durations learnt from the project's earlier builds."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from coordinator_kit import Rig

from farm.coordinator.dispatch_order import ranks_of
from farm.domain.records import JobRecord
from farm.domain.specs import JobSpec
from farm.domain.statuses import JobStatus

# `short` leads a chain of 3 jobs; `long` and `mid` are alone. Same stage, all ready.
CHAIN = """
stages: [one, two]
short: {stage: one, script: [x]}
long: {stage: one, script: [x]}
mid: {stage: one, script: [x]}
after1: {stage: two, needs: [short], script: [x]}
after2: {stage: two, needs: [after1], script: [x]}
"""


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


def _ran(rig: Rig, build_id: int, seconds: dict[str, float]) -> None:
    """Run the whole build, each job taking ``seconds[name]`` from claim to finish."""
    while pending := rig.with_status(build_id, JobStatus.PENDING):
        for name in pending:
            job = rig.claim(build_id, name)
            took = timedelta(seconds=seconds.get(name, 1.0))
            rig.store.cas_job(job.id, [JobStatus.RUNNING], started_at=job.started_at - took)
            rig.finish(build_id, name)


def test_a_first_build_sends_the_longest_chain_first(rig: Rig) -> None:
    b = rig.start(CHAIN)  # nothing known: every job counts the same, the chain wins
    assert rig.dispatched(b) == ["short", "long", "mid"]


def test_later_builds_use_the_last_durations(rig: Rig) -> None:
    first = rig.start(CHAIN)
    _ran(rig, first, {"short": 0.1, "after1": 0.1, "after2": 0.1, "long": 9.0, "mid": 2.0})
    assert rig.store.last_durations("app", ["long", "mid", "nope"]) == pytest.approx(
        {"long": 9.0, "mid": 2.0}, abs=0.01
    )
    second = rig.start(CHAIN)
    assert rig.dispatched(second) == ["long", "mid", "short"]
    assert rig.store.last_durations("other", ["long"]) == {}


def test_stages_without_needs_rank_through_the_later_stages() -> None:
    def job(i: int, name: str, stage: str) -> JobRecord:
        spec = JobSpec(name=name, stage=stage, script=("x",))
        return JobRecord(
            id=i,
            build_id=1,
            name=name,
            stage=stage,
            position=i,
            spec=spec,
            status=JobStatus.CREATED,
            attempt=1,
            queue="default",
        )

    jobs = [job(1, "a", "build"), job(2, "b", "build"), job(3, "t", "test"), job(4, "p", "pack")]
    ranks = ranks_of(jobs, [0, 0, 1, 2], {"a": 1.0, "b": 5.0, "t": 2.0, "p": 3.0})
    assert ranks["a"] == pytest.approx(6.0)  # a, then t, then p
    assert ranks["b"] == pytest.approx(10.0)
    assert ranks["t"] == pytest.approx(5.0)
    assert ranks["p"] == pytest.approx(3.0)
