"""A build's progress kept in memory and updated job by job (pure: no I/O).

:class:`Shape` is what never changes about a build (its jobs and their DAG);
:class:`BuildView` is the decision graph at the build's current job states, updated
with only the jobs that changed. A finished job then costs the coordinator work in
proportion to the jobs it can make ready, not to the build's size (issue 10: a finish
on a 5,000-job build within 2x of one on a 50-job build): the nodes of unchanged jobs
are kept, only the changed jobs' dependents are decided again, and the build's status
is read from counters.

Jobs without ``needs`` wait for one summary node per earlier stage instead of for every
earlier job; each summary gets the status that makes ``state.decide`` and
``state.build_status`` answer exactly as they would over the full upstream lists
(``tests/unit/coordinator/test_big_builds.py`` and ``tests/unit/domain/test_progress.py``
check both on random pipelines and random sequences of changes).
"""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from farm.domain import state
from farm.domain.records import BuildRecord, JobRecord
from farm.domain.state import JobNode
from farm.domain.statuses import BuildStatus, JobStatus


class JobState(Protocol):
    """A job's current state, without its spec."""

    @property
    def id(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def attempt(self) -> int: ...
    @property
    def exit_code(self) -> int | None: ...
    @property
    def reason(self) -> str | None: ...


def summary_name(rank: int) -> str:
    """The summary node standing for every job of the stages before ``rank``."""
    # NUL never appears in a job name read from YAML keys by the loader.
    return f"\0stages<{rank}"


@dataclass(frozen=True)
class Shape:
    """What never changes about a build: its jobs (specs, names, queues) and their DAG."""

    jobs: tuple[JobRecord, ...]  # in definition order; only their fixed fields are used
    index: dict[int, int]  # job id -> position in ``jobs``
    named: dict[str, int]  # job name -> position in ``jobs``
    ranks: tuple[int, ...]  # each job's stage, as its index in the build's stages
    barrier: tuple[str | None, ...]  # each job's summary node (None: nothing earlier)

    @classmethod
    def of(cls, build: BuildRecord) -> Shape:
        """The shape of a build read with its jobs."""
        rank = {name: i for i, name in enumerate(build.stages)}
        jobs = tuple(dataclasses.replace(j, artifacts=()) for j in build.jobs)
        ranks = tuple(rank.get(j.stage, len(rank)) for j in jobs)
        first = min(ranks, default=0)
        return cls(
            jobs=jobs,
            index={j.id: i for i, j in enumerate(jobs)},
            named={j.name: i for i, j in enumerate(jobs)},
            ranks=ranks,
            barrier=tuple(None if r == first else summary_name(r) for r in ranks),
        )

    def job(self, job_id: int) -> JobRecord:
        """The job with this id."""
        return self.jobs[self.index[job_id]]

    def node(self, i: int, now: JobState) -> JobNode:
        """Job ``i``'s decision node at state ``now``."""
        job, barrier = self.jobs[i], self.barrier[i]
        spec = job.spec
        explicit = spec.needs is not None
        return JobNode(
            name=job.name,
            status=JobStatus(now.status),
            when=spec.when,
            allow_failure=spec.allow_failure
            or (now.exit_code is not None and now.exit_code in spec.allow_failure_exit_codes),
            upstream=tuple(n.job for n in spec.needs or ())
            if explicit
            else ((barrier,) if barrier else ()),
            explicit_needs=explicit,
            reason=now.reason,
        )

    def nodes(self, states: Mapping[int, JobState]) -> dict[str, JobNode]:
        """The whole decision graph at ``states``, computed afresh (the reference
        :class:`BuildView` keeps up to date): one node per job, then one summary node
        per stage that has earlier stages."""
        view = BuildView.of(self, states.values(), rev=0)
        return dict(view.nodes)


def _summaries(
    blocking: Mapping[int, set[str]], failing: Mapping[int, set[str]]
) -> dict[str, JobNode]:
    """The summary nodes, from each rank's blocking and failing jobs (O(stages))."""
    out: dict[str, JobNode] = {}
    blocked = bad = False
    for i, rank in enumerate(sorted(blocking)):
        if i:  # stages before this one exist: summarise them
            name = summary_name(rank)
            if blocked:
                # Created and held back by itself: it blocks its dependents, as a job of
                # the earlier stages does, and is never decided (not even by a decide()
                # over every node, which settling asks).
                out[name] = JobNode(name, JobStatus.CREATED, upstream=(name,))
            elif bad:  # final and failing, counted by nothing but the decision
                out[name] = JobNode(name, JobStatus.SKIPPED, reason=state.SKIP_UPSTREAM_FAILED)
            else:
                out[name] = JobNode(name, JobStatus.SUCCESS)
        blocked = blocked or bool(blocking[rank])
        bad = bad or bool(failing[rank])
    return out


@dataclass
class BuildView:
    """The decision graph of one build at its current job states, kept up to date.

    ``rev`` is the store's change counter of the build the states were read at
    (``Store.job_changes``). Not thread-safe by itself: callers hold ``lock``.
    """

    shape: Shape
    rev: int
    states: dict[int, JobState] = field(default_factory=dict)
    nodes: dict[str, JobNode] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _dependents: dict[str, list[str]] = field(default_factory=dict, repr=False)
    _blocking: dict[int, set[str]] = field(default_factory=dict, repr=False)
    _failing: dict[int, set[str]] = field(default_factory=dict, repr=False)
    _counts: Counter[str] = field(default_factory=Counter, repr=False)
    _candidates: set[str] = field(default_factory=set, repr=False)
    _open: set[str] = field(default_factory=set, repr=False)  # decided, not applied
    _summary: dict[str, JobNode] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, shape: Shape, states: Iterable[JobState], rev: int) -> BuildView:
        """A view of ``shape`` at ``states`` (every job of the build, or a part)."""
        view = cls(shape=shape, rev=rev)
        for i, job in enumerate(shape.jobs):
            ups = job.spec.needs
            for up in (n.job for n in ups) if ups is not None else (shape.barrier[i] or "",):
                if up:
                    view._dependents.setdefault(up, []).append(job.name)
        view.update(states)
        return view

    # --- changes -----------------------------------------------------------------------

    def update(self, states: Iterable[JobState]) -> list[str]:
        """Apply jobs' new states; returns the names of the jobs whose node changed.
        What they may unblock is decided by the next :meth:`decide`."""
        changed: list[str] = []
        shape = self.shape
        for now in states:
            i = shape.index.get(now.id)
            if i is None:
                continue  # not a job of this build's shape
            self.states[now.id] = now
            node = shape.node(i, now)
            old = self.nodes.get(node.name)
            if old == node:
                continue
            rank = shape.ranks[i]
            blocking = self._blocking.setdefault(rank, set())
            failing = self._failing.setdefault(rank, set())
            if old is not None:
                self._count(old, -1)
            self._count(node, 1)
            (blocking.add if state._blocks(node, False) else blocking.discard)(node.name)
            (failing.add if state._is_failing(node) else failing.discard)(node.name)
            self.nodes[node.name] = node
            changed.append(node.name)
            self._candidates.add(node.name)
            self._candidates.update(self._dependents.get(node.name, ()))
        if changed:
            self._resummarise()
        return changed

    def _count(self, node: JobNode, n: int) -> None:
        self._counts[node.status] += n
        if node.status in (JobStatus.FAILED, JobStatus.MANUAL) and not node.allow_failure:
            self._counts["blocking " + node.status] += n

    def _resummarise(self) -> None:
        for name, node in _summaries(self._blocking, self._failing).items():
            old = self.nodes.get(name)
            self.nodes[name] = self._summary[name] = node
            if old is None or old.status != node.status:
                self._candidates.update(self._dependents.get(name, ()))

    # --- decisions -----------------------------------------------------------------------

    def decide(self) -> list[state.Decision]:
        """Decisions for every ``created`` job that can move now: the dependents of what
        changed since the last call, and what was decided then but is still ``created``
        (a resource group it waits for). In definition order."""
        names = self._candidates | self._open
        self._candidates = set()
        named = self.shape.named
        order = sorted(named[n] for n in names if n in named)
        out = state.decide(self.nodes, only=[self.shape.jobs[i].name for i in order])
        self._open = {d.name for d in out}
        return out

    def status(self, cancel_requested: bool = False) -> BuildStatus:
        """The build's status word, as ``state.build_status`` over every node says it."""
        if self._candidates:
            self.decide()
        counts = self._counts
        if not self.nodes:
            return BuildStatus.SUCCESS
        active = counts[JobStatus.PENDING] + counts[JobStatus.RUNNING]
        if active or self._open:
            jobs = sum(counts[s] for s in JobStatus)
            waiting = counts[JobStatus.CREATED] + counts[JobStatus.PENDING]
            summaries_final = any(n.status != JobStatus.CREATED for n in self._summary.values())
            started = jobs > waiting or summaries_final
            return BuildStatus.RUNNING if started else BuildStatus.PENDING
        if cancel_requested or counts[JobStatus.CANCELED]:
            return BuildStatus.CANCELED
        if counts["blocking " + JobStatus.FAILED]:
            return BuildStatus.FAILED
        if counts["blocking " + JobStatus.MANUAL]:
            return BuildStatus.MANUAL
        return BuildStatus.SUCCESS
