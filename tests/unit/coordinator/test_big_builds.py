"""Big builds: the coordinator's work per step does not grow with the build (issue 16,
item 2), and its stage summaries decide exactly as the full upstream lists do."""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from coordinator_kit import Rig

from farm.domain import state
from farm.domain.clock import utcnow
from farm.domain.progress import Shape as _Shape
from farm.domain.records import BuildRecord, JobRecord
from farm.domain.specs import JobSpec, Need, Pipeline, PipelineLimits
from farm.domain.state import JobNode
from farm.domain.statuses import BuildStatus, FailureReason, JobStatus, SkipReason


def _pipeline(copies: int, stages: int = 2, defs: int = 10) -> str:
    """``defs`` jobs of ``parallel: copies`` spread over ``stages`` stages."""
    names = [f"s{i}" for i in range(stages)]
    lines = [f"stages: [{', '.join(names)}]"]
    for d in range(defs):
        stage = names[d * stages // defs]
        lines.append(f"job{d}: {{stage: {stage}, script: [x], parallel: {copies}}}")
    return "\n".join(lines)


def _costs(rig: Rig, copies: int) -> tuple[Counter[str], ...]:
    """Store calls of: a submit, a job's claim and finish, the watchdog pass, a cancel."""
    costs = []
    b = rig.start(_pipeline(copies))
    costs.append(Counter(rig.store.calls))
    first = rig.job(b, f"job0 1/{copies}")
    for step in (
        lambda: rig.run(b, first.name),
        rig.coord.watchdog,
        lambda: rig.coord.cancel(b),
    ):
        rig.store.calls.clear()
        step()
        costs.append(Counter(rig.store.calls))
    return tuple(costs)


def test_store_calls_per_step_do_not_grow_with_the_build(tmp_path: Path) -> None:
    small = _costs(Rig(tmp_path / "s", probe=True), 10)  # 100 jobs
    big = _costs(Rig(tmp_path / "b", probe=True), 200)  # 2,000 jobs
    submit, finish, sweep, cancel = big
    assert (small[0], small[1], small[3]) == (submit, finish, cancel)
    # the watchdog pass: the small build's jobs were all sent by the submit; the big one's
    # jobs beyond the advance's own are sent now, one page of the outbox
    assert small[2] == Counter(jobs_with_status=1, outbox=1)
    assert sweep["outbox"] == 2 and sweep["mark_queued"] == 2  # pages of 500
    assert submit["cas_job"] == 0 and submit["job_changes"] == 2  # the view, its catch-up
    assert submit["get_build"] <= 4  # a header, the shape, the build returned, the deliverable
    assert cancel["cas_jobs_of_build"] == 1 and cancel["cas_job"] == 0


def test_an_advance_sends_200_messages_and_kicks_an_outbox_pass_for_the_rest(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path, probe=True)
    assert not rig.coord.outbox_kick.is_set()
    b = rig.start(_pipeline(200))  # 1,000 jobs in the first stage
    assert len(rig.with_status(b, JobStatus.PENDING)) == 1000
    assert len(rig.dispatcher.calls) == 200
    assert rig.coord.outbox_kick.is_set()  # the API's watchdog thread sends them now
    assert rig.coord.watchdog() == []
    assert len(rig.dispatcher.calls) == 1000 == len(set(rig.dispatcher.jobs()))
    assert rig.coord.watchdog() == [] and len(rig.dispatcher.calls) == 1000


def test_deciding_a_staged_build_reads_each_job_once(tmp_path: Path) -> None:
    """Jobs without needs wait for one summary node, not for every earlier job."""
    rig = Rig(tmp_path)
    b = rig.start(_pipeline(200, stages=5))  # 2,000 jobs, 400 a stage
    build = rig.build(b)
    nodes = _Shape.of(build).nodes({j.id: j for j in build.jobs})
    assert sum(len(n.upstream) for n in nodes.values()) < len(build.jobs) + 5
    # the full lists: 400 * (400 + 800 + 1200 + 1600) upstream entries
    assert sum(len(n.upstream) for n in _full_nodes(build).values()) == 1_600_000


def test_a_10000_job_pipeline_is_submitted_and_canceled_in_bounded_steps(tmp_path: Path) -> None:
    rig = Rig(tmp_path, probe=True)
    b = rig.start(_pipeline(200, stages=5, defs=50), limits=PipelineLimits(max_jobs=10_000))
    build = rig.build(b)
    assert len(build.jobs) == 10_000 and build.status == BuildStatus.PENDING
    assert len(rig.with_status(b, JobStatus.PENDING)) == 2000
    rig.store.calls.clear()
    rig.coord.cancel(b)
    assert {j.status for j in rig.build(b).jobs} == {JobStatus.CANCELED}
    assert rig.store.calls["cas_jobs_of_build"] == 1 and rig.store.calls["cas_job"] == 0
    assert rig.coord.sweep() == 0  # nothing canceled is ever sent


# --- stage summaries decide as the full lists do -------------------------------------------


def _full_nodes(build: BuildRecord) -> dict[str, JobNode]:
    """The nodes as the coordinator built them before summaries: every upstream job listed."""
    pipeline = Pipeline(stages=build.stages, jobs=tuple(j.spec for j in build.jobs))
    nodes: dict[str, JobNode] = {}
    for job in build.jobs:
        spec = job.spec
        allowed = spec.allow_failure or (
            job.exit_code is not None and job.exit_code in spec.allow_failure_exit_codes
        )
        nodes[job.name] = JobNode(
            name=job.name,
            status=JobStatus(job.status),
            when=spec.when,
            allow_failure=allowed,
            upstream=pipeline.upstream(spec),
            explicit_needs=spec.needs is not None,
            reason=job.reason,
        )
    return nodes


_REASONS: dict[JobStatus, list[str | None]] = {
    JobStatus.SKIPPED: [SkipReason.UPSTREAM_FAILED, SkipReason.NOT_NEEDED],
    JobStatus.FAILED: [FailureReason.SCRIPT_FAILURE, FailureReason.TIMEOUT],
    JobStatus.CANCELED: [FailureReason.CANCELED],
}


def _random_build(rnd: random.Random) -> BuildRecord:
    stages = tuple(f"s{i}" for i in range(rnd.randint(1, 4)))
    jobs: list[JobRecord] = []
    for i in range(rnd.randint(1, 10)):
        name = f"j{i}"
        earlier = [j.name for j in jobs]
        needs = None
        if earlier and rnd.random() < 0.3:
            needs = tuple(Need(n) for n in rnd.sample(earlier, rnd.randint(0, len(earlier))))
        status = rnd.choice(list(JobStatus))
        spec = JobSpec(
            name=name,
            stage=rnd.choice(stages),
            script=("x",),
            needs=needs,
            when=rnd.choice(["on_success", "on_success", "manual", "always", "on_failure"]),
            allow_failure=rnd.random() < 0.3,
            allow_failure_exit_codes=(42,) if rnd.random() < 0.2 else (),
        )
        jobs.append(
            JobRecord(
                id=i + 1,
                build_id=1,
                name=name,
                stage=spec.stage,
                position=i,
                spec=spec,
                status=status,
                attempt=1,
                queue="farm",
                exit_code=rnd.choice([None, 0, 1, 42]),
                reason=rnd.choice(_REASONS.get(status, [None])),
            )
        )
    return BuildRecord(
        id=1,
        project="p",
        repo="r",
        ref="main",
        commit="c" * 40,
        status=BuildStatus.RUNNING,
        created_at=utcnow() - timedelta(minutes=1),
        pipeline_file=".gitlab-ci.yml",
        pipeline_digest="sha256:" + "0" * 64,
        snapshot_digest="sha256:" + "1" * 64,
        stages=stages,
        jobs=tuple(jobs),
    )


@pytest.mark.parametrize("seed", range(40))
def test_summaries_decide_and_settle_as_the_full_lists(seed: int) -> None:
    rnd = random.Random(seed)
    for _ in range(100):
        build = _random_build(rnd)
        full = _full_nodes(build)
        summarised = _Shape.of(build).nodes({j.id: j for j in build.jobs})
        assert state.decide(summarised) == state.decide(full), build
        for cancel in (False, True):
            assert state.build_status(summarised, cancel) == state.build_status(full, cancel)


def test_a_watchdog_pass_during_an_advance_sends_nothing_twice(tmp_path: Path) -> None:
    rig = Rig(tmp_path, probe=True)
    send = rig.dispatcher.dispatch
    passes: list[int] = []

    def dispatch(job: JobRecord, build: BuildRecord, countdown: float | None = None) -> None:
        send(job, build, countdown)
        if not passes:  # the watchdog thread's pass, while the advance is still sending
            passes.append(-1)
            passes[0] = rig.coord.sweep()

    rig.dispatcher.dispatch = dispatch  # type: ignore[method-assign]
    b = rig.start(_pipeline(200))  # 1,000 jobs ready: 200 sent by the advance
    assert passes == [800]  # the pass sent the other 800, none of the advance's
    assert sorted(rig.dispatcher.jobs()) == sorted(j.id for j in rig.build(b).jobs[:1000])
    assert rig.coord.sweep() == 0
