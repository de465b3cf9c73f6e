"""Pure build/job state logic: what may run, what must be skipped, when a build is done.

No I/O. The service applies these decisions through compare-and-set updates, so
deciding twice (two job completions at once) never does anything twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from farm.domain.statuses import (
    FINAL_JOB,
    BuildStatus,
    FailureReason,
    JobStatus,
    SkipReason,
)

# Kept as names of this module: the decision code reads best with them.
SKIP_UPSTREAM_FAILED = SkipReason.UPSTREAM_FAILED
SKIP_NOT_NEEDED = SkipReason.NOT_NEEDED


@dataclass(frozen=True)
class JobNode:
    """What the decision logic needs to know about one job."""

    name: str
    status: JobStatus
    when: str = "on_success"
    allow_failure: bool = False
    upstream: tuple[str, ...] = ()
    explicit_needs: bool = False
    reason: str | None = None  # skip reason or failure reason


Action = Literal["dispatch", "skip", "manual", "delay"]


@dataclass(frozen=True)
class Decision:
    """One thing to do to a ``created`` job."""

    name: str
    action: Action
    reason: str | None = None


def _is_failing(node: JobNode) -> bool:
    if node.status == JobStatus.FAILED:
        return not node.allow_failure
    if node.status == JobStatus.CANCELED:
        return True
    return node.status == JobStatus.SKIPPED and node.reason == SKIP_UPSTREAM_FAILED


def _blocks(upstream: JobNode, explicit: bool) -> bool:
    """Whether ``upstream`` still holds back a job that depends on it."""
    if upstream.status in FINAL_JOB:
        return False
    if upstream.status == JobStatus.MANUAL:
        # GitLab: an optional manual job (allow_failure) does not hold later stages,
        # but a job that explicitly needs it waits until it has run.
        return explicit or not upstream.allow_failure
    return True


def decide(nodes: Mapping[str, JobNode], only: Iterable[str] | None = None) -> list[Decision]:
    """Decisions for every ``created`` job whose upstream jobs have settled (of the jobs
    named in ``only``, in that order, when given)."""
    out: list[Decision] = []
    for node in nodes.values() if only is None else (nodes[n] for n in only if n in nodes):
        if node.status != JobStatus.CREATED:
            continue
        ups = [nodes[u] for u in node.upstream if u in nodes]
        if any(_blocks(u, node.explicit_needs) for u in ups):
            continue
        failing = any(_is_failing(u) for u in ups)
        out.append(_decide_one(node, failing))
    return out


def _decide_one(node: JobNode, failing: bool) -> Decision:
    if node.when == "always":
        return Decision(node.name, "dispatch")
    if node.when == "on_failure":
        return (
            Decision(node.name, "dispatch")
            if failing
            else Decision(node.name, "skip", SKIP_NOT_NEEDED)
        )
    if failing:
        return Decision(node.name, "skip", SKIP_UPSTREAM_FAILED)
    if node.when == "manual":
        return Decision(node.name, "manual")
    if node.when == "delayed":
        return Decision(node.name, "delay")
    return Decision(node.name, "dispatch")


def is_settled(nodes: Mapping[str, JobNode]) -> bool:
    """True when nothing runs, nothing is queued and no waiting job can move."""
    active = {JobStatus.PENDING, JobStatus.RUNNING}
    if any(n.status in active for n in nodes.values()):
        return False
    return not decide(nodes)


def build_status(nodes: Mapping[str, JobNode], cancel_requested: bool = False) -> BuildStatus:
    """The build's status word derived from its jobs."""
    values = list(nodes.values())
    if not values:
        return BuildStatus.SUCCESS
    if not is_settled(nodes):
        started = any(n.status not in (JobStatus.CREATED, JobStatus.PENDING) for n in values)
        return BuildStatus.RUNNING if started else BuildStatus.PENDING
    if cancel_requested or any(n.status == JobStatus.CANCELED for n in values):
        return BuildStatus.CANCELED
    if any(n.status == JobStatus.FAILED and not n.allow_failure for n in values):
        return BuildStatus.FAILED
    if any(n.status == JobStatus.MANUAL and not n.allow_failure for n in values):
        return BuildStatus.MANUAL
    return BuildStatus.SUCCESS


# --- retries -------------------------------------------------------------------------

# How a failure reason maps to GitLab's retry:when words.
_RETRY_WORDS: dict[str | None, frozenset[str]] = {
    None: frozenset({"script_failure"}),
    FailureReason.SCRIPT_FAILURE: frozenset({"script_failure"}),
    FailureReason.TIMEOUT: frozenset({"job_execution_timeout", "stuck_or_timeout_failure"}),
    FailureReason.WORKER_LOST: frozenset({"runner_system_failure", "stuck_or_timeout_failure"}),
    FailureReason.EXECUTOR_ERROR: frozenset({"runner_system_failure"}),
    FailureReason.WORKER_ERROR: frozenset({"runner_system_failure"}),
    FailureReason.OOM: frozenset({"script_failure"}),
    FailureReason.IMAGE_NOT_FOUND: frozenset({"runner_system_failure"}),
}


def should_retry(
    *,
    attempt: int,
    max_retries: int,
    when: Iterable[str],
    exit_codes: Iterable[int],
    reason: str | None,
    exit_code: int | None,
) -> bool:
    """Whether a failed ``attempt`` (1-based) earns another, per the job's ``retry:``."""
    if attempt > max_retries or reason == FailureReason.CANCELED:
        return False
    codes = set(exit_codes)
    if codes and exit_code not in codes:
        return False
    words = set(when) or {"always"}
    if "always" in words:
        return True
    return bool(words & _RETRY_WORDS.get(reason, frozenset({"unknown_failure"})))


# --- queues --------------------------------------------------------------------------

DEFAULT_QUEUE = "farm"
# Commit statuses for git hosts (farm/worker/commit_status.py): small HTTP calls every
# worker serves, whatever its tags, between jobs.
STATUS_QUEUE = "farm.status"


def queue_for(tags: Iterable[str]) -> str:
    """The Celery queue of a job with these ``tags`` (untagged jobs share one queue)."""
    clean = sorted({t.strip() for t in tags if t.strip()})
    return DEFAULT_QUEUE if not clean else "farm.tags." + "+".join(clean)


def queues_for_worker(tags: Iterable[str], run_untagged: bool = False) -> list[str]:
    """Every queue a worker with ``tags`` serves: a job fits when its tags are a subset;
    and the status queue (:data:`STATUS_QUEUE`), last.

    Untagged jobs go to a worker without tags, or to a tagged one with ``run_untagged``
    (GitLab's runner switch, off by default: a tagged runner keeps to tagged jobs).
    """
    clean = sorted({t.strip() for t in tags if t.strip()})
    queues = [DEFAULT_QUEUE] if run_untagged or not clean else []
    n = len(clean)
    for mask in range(1, 1 << n):
        subset = [clean[i] for i in range(n) if mask >> i & 1]
        queues.append(queue_for(subset))
    queues.append(STATUS_QUEUE)
    return queues


# --- auto-cancel of redundant builds ----------------------------------------------------

STARTED = frozenset({JobStatus.RUNNING, JobStatus.SUCCESS, JobStatus.FAILED})


def is_interruptible(jobs: Iterable[tuple[str, bool, bool]]) -> bool:
    """Whether an older build may be auto-canceled by a newer one on the same ref.

    ``jobs`` are (status, interruptible, ever started) triples. GitLab's rule: a pipeline
    is redundant-cancelable while every job that has started is ``interruptible``; jobs
    that have not started yet do not count (they would simply never start). Farm's own
    choice: a build none of whose jobs is ``interruptible`` is never canceled, so plain CI
    use (several commits of one branch in flight) keeps every build.
    """
    items = list(jobs)
    if not any(interruptible for _, interruptible, _ in items):
        return False
    return all(
        interruptible for status, interruptible, started in items if started or status in STARTED
    )
