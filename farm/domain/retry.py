"""Pure rule of a person's retry (GitLab's Retry button): which jobs run again.

No I/O. The coordinator (``Coordinator.retry``) applies the answer through
compare-and-set updates.

The rule
--------
* Only ``failed`` and ``canceled`` jobs may be retried. Retrying a build retries every
  such job of it; retrying a job retries that job.
* Each retried job gets a new attempt and goes back to ``created`` (the DAG then
  dispatches it, as it would a job whose upstream just settled).
* Every job downstream of a retried one (through ``needs``, or through stage order for
  a job without ``needs``), transitively, that ended ``skipped`` or ``canceled`` goes back
  to ``created`` too: it was skipped or canceled *because* of what is being retried, and
  the DAG decides again whether it runs. Downstream jobs that ran (success, failed) are
  left as they are, as GitLab does; so are ``manual`` and still-waiting ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from farm.domain.statuses import JobStatus

RETRYABLE = frozenset({JobStatus.FAILED, JobStatus.CANCELED})
# Downstream jobs in these states were held back by the retried job and run again.
RESETTABLE = frozenset({JobStatus.SKIPPED, JobStatus.CANCELED})


@dataclass(frozen=True)
class RetryNode:
    """What the retry rule needs to know about one job."""

    name: str
    status: JobStatus
    rank: int  # its stage's index in the build's stages
    needs: tuple[str, ...] | None = None  # None: every job of the earlier stages


@dataclass(frozen=True)
class RetryPlan:
    """The jobs a retry sends back to ``created``."""

    retried: tuple[str, ...]  # failed/canceled jobs asked for: each gets attempt + 1
    downstream: tuple[str, ...]  # skipped/canceled jobs below them


def retryable(nodes: Iterable[RetryNode]) -> list[str]:
    """The jobs a build retry retries: every failed or canceled one."""
    return [n.name for n in nodes if n.status in RETRYABLE]


def plan_retry(nodes: Sequence[RetryNode], names: Iterable[str]) -> RetryPlan:
    """Which jobs go back to ``created`` when the jobs ``names`` are retried.

    ``names`` that are not failed or canceled are not retried (the caller says why).
    O(jobs x depth of the chain): a fixpoint over the nodes, cheap next to running jobs.
    """
    by_name = {n.name: n for n in nodes}
    retried = [n for n in dict.fromkeys(names) if n in by_name and by_name[n].status in RETRYABLE]
    dirty = set(retried)
    # A job without needs is below every dirty job of an earlier stage: the lowest dirty
    # rank decides it, so stage order costs O(1) per job, not O(jobs).
    low = min((by_name[n].rank for n in dirty), default=None)
    downstream: list[str] = []
    changed = bool(dirty)
    while changed:
        changed = False
        for node in nodes:
            if node.name in dirty or node.status not in RESETTABLE:
                continue
            if node.needs is None:
                below = low is not None and node.rank > low
            else:
                below = any(n in dirty for n in node.needs)
            if below:
                dirty.add(node.name)
                downstream.append(node.name)
                low = node.rank if low is None else min(low, node.rank)
                changed = True
    order = {n.name: i for i, n in enumerate(nodes)}
    return RetryPlan(
        retried=tuple(retried), downstream=tuple(sorted(downstream, key=order.__getitem__))
    )
