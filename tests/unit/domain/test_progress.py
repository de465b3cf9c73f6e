"""The build view kept up to date job by job decides and settles exactly as the whole
graph computed afresh does, on random pipelines and random sequences of changes."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

import pytest

from farm.domain import state
from farm.domain.clock import utcnow
from farm.domain.progress import BuildView, Shape
from farm.domain.records import BuildRecord, JobRecord
from farm.domain.specs import JobSpec, Need
from farm.domain.statuses import BuildStatus, FailureReason, JobStatus, SkipReason

_REASONS: dict[JobStatus, list[str | None]] = {
    JobStatus.SKIPPED: [SkipReason.UPSTREAM_FAILED, SkipReason.NOT_NEEDED],
    JobStatus.FAILED: [FailureReason.SCRIPT_FAILURE, None],
    JobStatus.CANCELED: [FailureReason.CANCELED],
}


@dataclass(frozen=True)
class S:
    id: int
    status: str
    attempt: int = 1
    exit_code: int | None = None
    reason: str | None = None


def _shape(rnd: random.Random) -> Shape:
    stages = tuple(f"s{i}" for i in range(rnd.randint(1, 4)))
    jobs: list[JobRecord] = []
    for i in range(rnd.randint(1, 14)):
        earlier = [j.name for j in jobs]
        needs = None
        if earlier and rnd.random() < 0.35:
            needs = tuple(Need(n) for n in rnd.sample(earlier, rnd.randint(0, len(earlier))))
        spec = JobSpec(
            name=f"j{i}",
            stage=rnd.choice(stages),
            script=("true",),
            needs=needs,
            when=rnd.choice(["on_success", "on_success", "always", "on_failure", "manual"]),
            allow_failure=rnd.random() < 0.25,
            allow_failure_exit_codes=(3,) if rnd.random() < 0.2 else (),
        )
        jobs.append(
            JobRecord(
                id=100 + i, build_id=1, name=spec.name, stage=spec.stage, position=i, spec=spec,
                status=JobStatus.CREATED, attempt=1, queue="farm",
            )
        )  # fmt: skip
    build = BuildRecord(
        id=1, project="p", repo="/r", ref="main", commit="0" * 40, status=BuildStatus.PENDING,
        created_at=utcnow() - timedelta(minutes=1), pipeline_file=".gitlab-ci.yml",
        pipeline_digest="sha256:" + "0" * 64, snapshot_digest="sha256:" + "1" * 64,
        stages=stages, jobs=tuple(jobs),
    )  # fmt: skip
    return Shape.of(build)


def _random_state(rnd: random.Random, job_id: int) -> S:
    status = rnd.choice(list(JobStatus))
    code = rnd.choice([0, 1, 3]) if status in (JobStatus.SUCCESS, JobStatus.FAILED) else None
    return S(job_id, status, rnd.randint(1, 3), code, rnd.choice(_REASONS.get(status, [None])))


@pytest.mark.parametrize("seed", range(30))
def test_a_view_updated_by_changes_decides_and_settles_as_a_fresh_one(seed: int) -> None:
    rnd = random.Random(seed)
    for _ in range(40):
        shape = _shape(rnd)
        states = {j.id: S(j.id, JobStatus.CREATED) for j in shape.jobs}
        view = BuildView.of(shape, states.values(), rev=0)
        for _ in range(25):
            changed = [
                _random_state(rnd, j.id)
                for j in rnd.sample(shape.jobs, rnd.randint(1, min(3, len(shape.jobs))))
            ]
            view.update(changed)
            states.update((s.id, s) for s in changed)
            fresh = shape.nodes(states)
            assert view.nodes == fresh
            for cancel in (False, True):
                assert view.status(cancel) == state.build_status(fresh, cancel)
            assert view.decide() == state.decide(fresh)


def test_a_finish_decides_only_its_dependents() -> None:
    """On a wide build, a job's change makes only its own dependents candidates."""
    rnd = random.Random(7)
    shape = _shape(rnd)
    view = BuildView.of(shape, [S(j.id, JobStatus.CREATED) for j in shape.jobs], rev=0)
    view.decide()
    first = shape.jobs[0]
    view.update([S(first.id, JobStatus.RUNNING)])
    assert view._candidates <= {first.name} | set(view._dependents.get(first.name, ())) | {
        j.name for j, b in zip(shape.jobs, shape.barrier, strict=True) if b is not None
    }
