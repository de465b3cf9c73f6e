"""Which queues a worker serves: GitLab's run_untagged switch."""

from __future__ import annotations

from farm.domain.state import DEFAULT_QUEUE, STATUS_QUEUE, queue_for, queues_for_worker


def test_a_worker_without_tags_takes_untagged_jobs() -> None:
    assert queues_for_worker([]) == [DEFAULT_QUEUE, STATUS_QUEUE]


def test_a_tagged_worker_keeps_to_tagged_jobs_by_default() -> None:
    queues = queues_for_worker(["docker"])
    assert DEFAULT_QUEUE not in queues
    assert queues == [queue_for(["docker"]), STATUS_QUEUE]


def test_run_untagged_lets_a_tagged_worker_take_untagged_jobs() -> None:
    assert queues_for_worker(["docker"], run_untagged=True) == [
        DEFAULT_QUEUE,
        queue_for(["docker"]),
        STATUS_QUEUE,
    ]
