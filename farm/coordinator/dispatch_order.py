"""Critical-path-first dispatch (issue 11): the order an advance sends its ready jobs in.

When more jobs are ready than there are free slots, the ones sent first start first
(a Celery queue on Redis is FIFO), so an advance sends its batch longest remaining
path first (:mod:`farm.domain.schedule_rank`: list scheduling, HLFET). Each job's
expected duration is the claim → finish time of the latest successful job of the same
project and name that ran (``Store.last_durations``); a job never seen counts as the
median of the known ones (1 s when none is known). A job without ``needs`` waits for
every job of the earlier stages: that is one summary node per stage here (duration 0),
so the graph stays O(jobs) for big staged pipelines.

Ranks are computed once per build (its shape never changes) and kept for the
``_BUILDS_KEPT`` builds used last. An error in here never stops a dispatch: the batch
is then sent in the order it was decided.
"""

from __future__ import annotations

import logging
import statistics
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TypeVar

from farm.coordinator.ports import Store
from farm.domain.records import BuildRecord, JobRecord
from farm.domain.schedule_rank import remaining_path

log = logging.getLogger("farm.coordinator")
_BUILDS_KEPT = 64
_DEFAULT = 1.0  # seconds, for a job when no duration of its project is known
_T = TypeVar("_T")


def _barrier(rank: int) -> str:
    return f"\0stage<{rank}"  # NUL never appears in a job name read from YAML


def ranks_of(
    jobs: Sequence[JobRecord], stage_ranks: Sequence[int], durations: dict[str, float]
) -> dict[str, float]:
    """Each job's remaining path (its duration plus the longest chain waiting on it)."""
    by_stage: dict[int, list[str]] = {}
    for job, rank in zip(jobs, stage_ranks, strict=True):
        by_stage.setdefault(rank, []).append(job.name)
    order = sorted(by_stage)
    upstream: dict[str, list[str]] = {}
    for i, rank in enumerate(order[1:], start=1):
        # The summary of "every stage before `rank`": the previous stage and its summary.
        below = order[i - 1]
        upstream[_barrier(rank)] = [*by_stage[below], *([_barrier(below)] if i > 1 else [])]
    first = order[0] if order else 0
    for job, rank in zip(jobs, stage_ranks, strict=True):
        needs = job.spec.needs
        if needs is not None:
            upstream[job.name] = [n.job for n in needs]
        else:
            upstream[job.name] = [] if rank == first else [_barrier(rank)]
    known = list(durations.values())
    default = statistics.median(known) if known else _DEFAULT
    expected = {job.name: durations.get(job.name, default) for job in jobs}
    expected.update({name: 0.0 for name in upstream if name.startswith("\0")})
    return remaining_path(list(upstream), upstream, expected, default)


class DispatchOrder:
    """Per-build ranks (kept for the builds used last) and the ordering of a batch."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ranks: OrderedDict[int, dict[int, float]] = OrderedDict()  # build -> job id -> rank

    def ranks(
        self,
        store: Store,
        build: BuildRecord,
        jobs: Sequence[JobRecord],
        stage_ranks: Sequence[int],
    ) -> dict[int, float]:
        """Each job's rank by job id (computed on the build's first use)."""
        with self._lock:
            known = self._ranks.get(build.id)
            if known is not None:
                self._ranks.move_to_end(build.id)
                return known
        durations = store.last_durations(build.project, [j.name for j in jobs])
        by_name = ranks_of(jobs, stage_ranks, durations)
        ranks = {job.id: by_name[job.name] for job in jobs}
        with self._lock:
            self._ranks[build.id] = ranks
            while len(self._ranks) > _BUILDS_KEPT:
                self._ranks.popitem(last=False)
        return ranks

    def sort(
        self,
        store: Store,
        build: BuildRecord,
        jobs: Sequence[JobRecord],
        stage_ranks: Sequence[int],
        ready: list[tuple[int, _T]],
    ) -> list[tuple[int, _T]]:
        """``ready`` (job id, anything) with the longest remaining path first; ties keep
        their order. ``jobs``/``stage_ranks``: the build's jobs and each one's stage."""
        if len(ready) < 2:
            return ready
        try:
            ranks = self.ranks(store, build, jobs, stage_ranks)
            return sorted(ready, key=lambda item: -ranks.get(item[0], 0.0))
        except Exception:  # an optimisation: never a reason not to dispatch
            log.exception("build %s: could not rank its ready jobs", build.id)
            return ready
