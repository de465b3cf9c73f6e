"""The retry rule: which jobs a person's retry sends back to ``created``."""

from __future__ import annotations

from farm.domain.retry import RetryNode, plan_retry, retryable
from farm.domain.statuses import JobStatus as S


def _n(name: str, status: S, rank: int, needs: tuple[str, ...] | None = None) -> RetryNode:
    return RetryNode(name, status, rank, needs)


def test_a_failed_job_and_the_jobs_skipped_below_it_reset() -> None:
    nodes = [
        _n("build", S.SUCCESS, 0),
        _n("test", S.FAILED, 1),
        _n("lint", S.SUCCESS, 1),
        _n("deploy", S.SKIPPED, 2),
        _n("notify", S.SUCCESS, 2, needs=("lint",)),
    ]
    plan = plan_retry(nodes, ["test"])
    assert plan.retried == ("test",)
    assert plan.downstream == ("deploy",)


def test_needs_chains_are_followed_transitively_and_unrelated_skips_stay() -> None:
    nodes = [
        _n("a", S.FAILED, 0, needs=()),
        _n("b", S.SKIPPED, 0, needs=("a",)),
        _n("c", S.CANCELED, 1, needs=("b",)),
        _n("x", S.FAILED, 0, needs=()),
        _n("y", S.SKIPPED, 1, needs=("x",)),
    ]
    plan = plan_retry(nodes, ["a"])
    assert plan.retried == ("a",) and plan.downstream == ("b", "c")


def test_jobs_that_ran_or_wait_are_not_reset() -> None:
    nodes = [
        _n("t", S.FAILED, 0),
        _n("cleanup", S.SUCCESS, 1),  # when: on_failure, ran
        _n("ship", S.MANUAL, 1),
    ]
    assert plan_retry(nodes, ["t"]).downstream == ()


def test_only_failed_or_canceled_jobs_are_retried() -> None:
    nodes = [_n("ok", S.SUCCESS, 0), _n("bad", S.FAILED, 0), _n("stop", S.CANCELED, 0)]
    assert retryable(nodes) == ["bad", "stop"]
    assert plan_retry(nodes, ["ok"]).retried == ()


def test_a_downstream_job_reset_makes_its_own_downstream_reset() -> None:
    nodes = [
        _n("a", S.FAILED, 0),
        _n("b", S.SKIPPED, 1, needs=("a",)),
        _n("c", S.SKIPPED, 1, needs=("b",)),  # same stage, needs b
        _n("d", S.SKIPPED, 2),  # stage order, after b and c
    ]
    assert plan_retry(nodes, ["a"]).downstream == ("b", "c", "d")
