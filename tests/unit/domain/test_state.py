"""The pure DAG/state logic: no services."""

from __future__ import annotations

from farm.domain.state import (
    STATUS_QUEUE,
    BuildStatus,
    JobNode,
    JobStatus,
    build_status,
    decide,
    queue_for,
    queues_for_worker,
    should_retry,
)

S = JobStatus


def nodes(*items: JobNode) -> dict[str, JobNode]:
    return {n.name: n for n in items}


def test_first_stage_is_dispatched_and_later_waits() -> None:
    g = nodes(JobNode("a", S.CREATED), JobNode("b", S.CREATED, upstream=("a",)))
    assert [(d.name, d.action) for d in decide(g)] == [("a", "dispatch")]


def test_success_unblocks_on_success_job() -> None:
    g = nodes(JobNode("a", S.SUCCESS), JobNode("b", S.CREATED, upstream=("a",)))
    assert [(d.name, d.action) for d in decide(g)] == [("b", "dispatch")]


def test_failure_skips_dependents_and_runs_on_failure_and_always() -> None:
    g = nodes(
        JobNode("a", S.FAILED),
        JobNode("b", S.CREATED, upstream=("a",)),
        JobNode("c", S.CREATED, when="on_failure", upstream=("a",)),
        JobNode("d", S.CREATED, when="always", upstream=("a",)),
    )
    got = {d.name: (d.action, d.reason) for d in decide(g)}
    assert got == {
        "b": ("skip", "upstream_failed"),
        "c": ("dispatch", None),
        "d": ("dispatch", None),
    }


def test_allowed_failure_does_not_fail_downstream() -> None:
    g = nodes(JobNode("a", S.FAILED, allow_failure=True), JobNode("b", S.CREATED, upstream=("a",)))
    assert decide(g)[0].action == "dispatch"


def test_skip_for_failure_propagates_down_needs_chains() -> None:
    g = nodes(
        JobNode("a", S.FAILED),
        JobNode("b", S.SKIPPED, upstream=("a",), reason="upstream_failed"),
        JobNode("c", S.CREATED, upstream=("b",), explicit_needs=True),
    )
    assert decide(g)[0].action == "skip"


def test_on_failure_job_skipped_when_all_pass_does_not_block() -> None:
    g = nodes(
        JobNode("a", S.SUCCESS),
        JobNode("n", S.SKIPPED, when="on_failure", upstream=("a",), reason="not_needed"),
        JobNode("z", S.CREATED, upstream=("a", "n")),
    )
    assert decide(g)[0].action == "dispatch"


def test_manual_optional_job_does_not_hold_later_stages_but_blocks_its_needers() -> None:
    g = nodes(
        JobNode("m", S.MANUAL, when="manual", allow_failure=True),
        JobNode("later", S.CREATED, upstream=("m",)),
        JobNode("needer", S.CREATED, upstream=("m",), explicit_needs=True),
    )
    assert [(d.name, d.action) for d in decide(g)] == [("later", "dispatch")]


def test_blocking_manual_holds_the_build_in_manual() -> None:
    g = nodes(
        JobNode("m", S.MANUAL, when="manual", allow_failure=False),
        JobNode("after", S.CREATED, upstream=("m",)),
    )
    assert decide(g) == []
    assert build_status(g) == BuildStatus.MANUAL


def test_running_job_waits_downstream() -> None:
    g = nodes(JobNode("a", S.RUNNING), JobNode("b", S.CREATED, upstream=("a",)))
    assert decide(g) == []
    assert build_status(g) == BuildStatus.RUNNING


def test_build_status_words() -> None:
    assert build_status(nodes(JobNode("a", S.PENDING))) == BuildStatus.PENDING
    assert build_status(nodes(JobNode("a", S.SUCCESS))) == BuildStatus.SUCCESS
    assert build_status(nodes(JobNode("a", S.FAILED))) == BuildStatus.FAILED
    assert build_status(nodes(JobNode("a", S.FAILED, allow_failure=True))) == BuildStatus.SUCCESS
    assert build_status(nodes(JobNode("a", S.CANCELED))) == BuildStatus.CANCELED
    assert build_status(nodes(JobNode("a", S.SUCCESS)), cancel_requested=True) == "canceled"


def test_retry_policy_follows_gitlab_words() -> None:
    kw = {"max_retries": 2, "exit_codes": ()}
    assert should_retry(attempt=1, when=("always",), reason=None, exit_code=1, **kw)
    assert should_retry(attempt=2, when=("always",), reason=None, exit_code=1, **kw)
    assert not should_retry(attempt=3, when=("always",), reason=None, exit_code=1, **kw)
    assert not should_retry(
        attempt=1, when=("runner_system_failure",), reason=None, exit_code=1, **kw
    )
    assert should_retry(
        attempt=1, when=("job_execution_timeout",), reason="timeout", exit_code=None, **kw
    )
    assert not should_retry(attempt=1, when=("always",), reason="canceled", exit_code=None, **kw)
    assert should_retry(
        attempt=1, when=("always",), reason=None, exit_code=137, max_retries=1, exit_codes=(137,)
    )
    assert not should_retry(
        attempt=1, when=("always",), reason=None, exit_code=1, max_retries=1, exit_codes=(137,)
    )


def test_queues_route_tagged_jobs_to_workers_with_a_superset_of_tags() -> None:
    assert queue_for([]) == "farm"
    assert queue_for(["docker", "arm"]) == queue_for(["arm", "docker"])
    worker = queues_for_worker(["arm", "docker", "gpu"], run_untagged=True)
    assert "farm" in worker
    assert queue_for(["docker", "arm"]) in worker
    assert queue_for(["docker"]) in worker
    assert queue_for(["x86"]) not in worker
    assert len(worker) == 9  # 7 tag subsets, untagged, and the commit status queue
    assert worker[-1] == STATUS_QUEUE
