"""The coordinator: applies the pure state logic to stored builds and jobs.

It talks to the world only through narrow interfaces — the :class:`Store`, a
:class:`Dispatcher` and a blob store — so the decisions stay in ``state`` and
every change is a compare-and-set that is safe to attempt twice.

Big builds
----------
Each process keeps a build's decision graph in memory (:class:`~farm.domain.progress.
BuildView`, a small LRU): its jobs and DAG, read once, and its jobs' states. An
:meth:`~Coordinator.advance` first catches up with what changed in the store since it
last looked (``Store.job_changes``: the build's change counter, so other API processes'
writes are seen), then decides only the dependents of the jobs that changed, and applies
each kind of decision to all its jobs in one compare-and-set statement (``cas_jobs``);
the changes it made are applied to the view at once, so a chain of skips is followed
without reading the build again. A finished job thus costs work in proportion to what it
can make ready, not to the build's size. Jobs without ``needs`` wait for one summary
node per earlier stage instead of for every earlier job. A cancel is one statement over
the build's waiting and running jobs. At most ``_INLINE`` messages are sent by the
advance itself; an outbox pass on the watchdog's thread, kicked at once, sends the rest.

The dispatch outbox: see :mod:`farm.coordinator.outbox`; workers' claims, logs and
finishes: :mod:`farm.coordinator.reports`; cancel, play and retry:
:mod:`farm.coordinator.actions`; the watchdog pass and restart recovery:
:mod:`farm.coordinator.recovery`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from farm.coordinator.actions import ActionsMixin
from farm.coordinator.deliverable import deliverable_manifest
from farm.coordinator.dispatch_order import DispatchOrder
from farm.coordinator.groups import ResourceGroups
from farm.coordinator.outbox import OutboxMixin
from farm.coordinator.ports import Blobs, Store, StoredBlob
from farm.coordinator.ports import Dispatcher as Dispatcher  # re-exported: callers import it here
from farm.coordinator.recovery import RecoveryMixin
from farm.coordinator.reports import JobResult as JobResult  # re-exported: tests import it
from farm.coordinator.reports import ReportsMixin
from farm.coordinator.result_cache import ResultCache
from farm.coordinator.timeline import MarkBuffer
from farm.domain import state
from farm.domain.clock import utcnow
from farm.domain.progress import BuildView, Shape
from farm.domain.records import BuildRecord, JobRecord, NewBuild
from farm.domain.specs import Pipeline
from farm.domain.statuses import (
    FINAL_BUILD,
    FINAL_JOB,
    ArtifactKind,
    BuildStatus,
    JobStatus,
)
from farm.settings import Settings

log = logging.getLogger("farm.coordinator")

_NOT_FINAL = tuple(s for s in BuildStatus if s not in FINAL_BUILD)
_INLINE = 200  # messages one advance sends itself; an outbox pass sends the rest at once
_SHAPES_MAX_JOBS = 50_000  # jobs of the build shapes kept in memory, least recent dropped


@dataclass(frozen=True, slots=True)
class _State:
    """A job state this process just wrote (a :class:`~farm.coordinator.ports.JobState`)."""

    id: int
    status: str
    attempt: int
    exit_code: int | None = None
    reason: str | None = None


@dataclass
class Coordinator(OutboxMixin, ReportsMixin, ActionsMixin, RecoveryMixin):
    """Drives builds from job completions (dynamic dispatch, never a static canvas)."""

    store: Store
    blobs: Blobs
    dispatcher: Dispatcher
    settings: Settings
    # Called with each build that finished; its jobs are in it only if it succeeded.
    on_build_finished: list[Callable[[BuildRecord], None]] = field(default_factory=list)
    # Called with the build (without jobs) after each status change it went through: made
    # pending, started running, finished (commit statuses). A failing hook is logged only.
    on_build_changed: list[Callable[[BuildRecord], None]] = field(default_factory=list)
    # Running attempts get a whole lease counted from here: after an API restart, workers
    # that kept running (and kept retrying their reports) are not declared lost at once.
    up_since: datetime = field(default_factory=utcnow)
    clock: Callable[[], float] = time.monotonic  # of the broker back-off (tests replace it)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _views: OrderedDict[int, BuildView] = field(default_factory=OrderedDict, init=False, repr=False)
    _epoch: str | None = field(default=None, init=False, repr=False)  # last broker epoch read
    # Jobs an advance of this process is making pending and sending: the sweep leaves them
    # to it (else each would be sent twice when a watchdog pass runs meanwhile).
    _sending: set[int] = field(default_factory=set, init=False, repr=False)
    _failures: int = field(default=0, init=False, repr=False)  # publishes failed in a row
    _retry_at: float = field(default=0.0, init=False, repr=False)  # monotonic; 0: no back-off
    results: ResultCache | None = None  # reuses identical jobs' results (result_cache.py)
    _started: set[int] = field(default_factory=set, init=False, repr=False)  # not pending
    # Set when an advance left ready jobs in the outbox: the API's watchdog thread then
    # sends them at once instead of at its next pass (the request answers meanwhile).
    outbox_kick: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    # Timelines finished after their job's finish, written in batches (timeline.py).
    _marks: MarkBuffer = field(default_factory=MarkBuffer, init=False, repr=False)
    # Sends a batch of ready jobs longest remaining path first (dispatch_order.py).
    _order: DispatchOrder = field(default_factory=DispatchOrder, init=False, repr=False)

    @property
    def groups(self) -> ResourceGroups:
        """``resource_group`` locks (stateless: all state is in the store)."""
        return ResourceGroups(self.store)

    # --- the DAG ---------------------------------------------------------------------

    @staticmethod
    def pipeline_of(build: BuildRecord) -> Pipeline:
        """The build's pipeline, rebuilt from its stored job specs."""
        return Pipeline(stages=build.stages, jobs=tuple(j.spec for j in build.jobs))

    def _view(self, build_id: int) -> BuildView:
        """The build's decision graph kept by this process (read in full the first time;
        :meth:`_catch_up` brings it up to date)."""
        with self._lock:
            view = self._views.get(build_id)
            if view is not None:
                self._views.move_to_end(build_id)
                return view
        shape = Shape.of(self.store.get_build(build_id))
        rev, states = self.store.job_changes(build_id, -1)
        return self._keep(build_id, BuildView.of(shape, states, rev))

    def start(self, build_id: int, new: NewBuild) -> None:
        """Advance a build just stored from ``new``: its view is made from the specs in
        hand (only the jobs' ids are read back), not by reading and parsing every job."""
        ids = self.store.job_ids(build_id)
        if len(ids) == len(new.jobs):
            build = self.store.get_build(build_id, with_jobs=False)
            jobs = new.job_records(build_id, ids)
            shape = Shape.of(dataclasses.replace(build, jobs=jobs))
            rev, states = self.store.job_changes(build_id, -1)
            self._keep(build_id, BuildView.of(shape, states, rev))
        self._advance(build_id)

    def _keep(self, build_id: int, view: BuildView) -> BuildView:
        """Keep ``view`` (or the one another thread kept first); drop the least recent
        views beyond ``_SHAPES_MAX_JOBS`` jobs."""
        with self._lock:
            kept_view = self._views.setdefault(build_id, view)
            kept = sum(len(v.shape.jobs) for v in self._views.values())
            while kept > _SHAPES_MAX_JOBS and len(self._views) > 1:
                _, dropped = self._views.popitem(last=False)
                kept -= len(dropped.shape.jobs)
        return kept_view

    def _shape(self, build_id: int) -> Shape:
        return self._view(build_id).shape

    def _catch_up(self, view: BuildView, build_id: int) -> None:
        """Apply what changed in the store since the view last read it (this process's
        own writes included: they are applied at once, and read again here)."""
        rev, states = self.store.job_changes(build_id, view.rev)
        view.update(states)
        view.rev = max(view.rev, rev)

    def advance(self, build_id: int) -> BuildRecord:
        """Dispatch what became ready, skip what cannot run, settle the build's status;
        returns the build with its jobs."""
        self._advance(build_id)
        return self.store.get_build(build_id)

    def _advance(self, build_id: int, build: BuildRecord | None = None) -> BuildStatus:
        """Advance a build (``build``: its own fields as just read, for the first step);
        returns the status it left the build in."""
        # A step that reused cached results may have made more jobs ready: step again.
        for _ in range(100_000):
            reused, status = self._advance_step(build_id, build)
            if not reused:
                return status
            build = None
        return status

    def _advance_step(
        self, build_id: int, build: BuildRecord | None = None
    ) -> tuple[bool, BuildStatus]:
        build = build or self.store.get_build(build_id, with_jobs=False)
        if build.status in FINAL_BUILD:
            return False, build.status
        view = self._view(build_id)
        ready: list[tuple[int, float | None]] = []  # made pending here: (job id, countdown)
        claimed: set[int] = set()  # in self._sending
        try:
            with view.lock:  # one advance of a build at a time in this process
                self._catch_up(view, build_id)
                for _ in range(len(view.shape.jobs) + 1):  # each round settles a job
                    decisions = view.decide()
                    if not decisions:
                        break
                    changed, raced = self._apply(view, decisions, ready, claimed)
                    if raced:  # someone else moved some of them: read where they are
                        self._catch_up(view, build_id)
                    if not changed:
                        break
                shape = view.shape
                ready = self._order.sort(self.store, build, shape.jobs, shape.ranks, ready)
                later = {job_id for job_id, _ in ready[_INLINE:]}
                if later:  # an outbox pass on the watchdog's thread sends these, now
                    self._unclaim(later)
                    claimed -= later
                    self.outbox_kick.set()
                    log.info(
                        "build %s: %d job(s) wait in the outbox for the watchdog pass",
                        build_id,
                        len(later),
                    )
                now = [(self._pending(view, job_id), cd) for job_id, cd in ready[:_INLINE]]
                reused = self._reuse(build, view, now)
                if reused:
                    now = [item for item in now if item[0].id not in reused]
                status = view.status(build.cancel_requested)
            self._publish(now, build)
        finally:
            self._unclaim(claimed)
        self._settle(build, status)
        return bool(reused), status

    def _reuse(
        self,
        build: BuildRecord,
        view: BuildView,
        ready: Sequence[tuple[JobRecord, float | None]],
    ) -> set[int]:
        """Finish the ready jobs whose results are cached (result_cache.py)."""
        if self.results is None or not ready:
            return set()
        shape = view.shape
        try:
            done = self.results.reuse_ready(build, shape, ready)
        except Exception:  # the cache is an optimisation: run the jobs
            log.exception("build %s: result cache lookup failed", build.id)
            return set()
        view.update(
            _State(job_id, JobStatus.SUCCESS, view.states[job_id].attempt, 0) for job_id in done
        )
        return done

    def _claim_sending(self, ids: Sequence[int], claimed: set[int]) -> None:
        with self._lock:
            self._sending.update(ids)
        claimed.update(ids)

    def _unclaim(self, ids: set[int]) -> None:
        with self._lock:
            self._sending -= ids

    @staticmethod
    def _pending(view: BuildView, job_id: int) -> JobRecord:
        return dataclasses.replace(
            view.shape.job(job_id), status=JobStatus.PENDING, attempt=view.states[job_id].attempt
        )

    def _apply(
        self,
        view: BuildView,
        decisions: Sequence[state.Decision],
        ready: list[tuple[int, float | None]],
        claimed: set[int],
    ) -> tuple[bool, bool]:
        """Apply decisions, each kind to all its jobs in one compare-and-set; record the
        changes in ``view`` and what became pending in ``ready``. Jobs about to become
        pending are first ``claimed`` for sending. Returns (anything changed, some job was
        not where we thought)."""
        now = utcnow()
        batches: dict[tuple[JobStatus, str | None, float | None], list[int]] = {}
        grouped: list[tuple[JobRecord, state.Decision]] = []
        shape, states = view.shape, view.states
        for decision in decisions:
            job = shape.jobs[shape.named[decision.name]]
            key: tuple[JobStatus, str | None, float | None]
            if decision.action == "skip":
                key = (JobStatus.SKIPPED, decision.reason, None)
            elif decision.action == "manual":
                key = (JobStatus.MANUAL, None, None)
            elif job.spec.resource_group:
                grouped.append((job, decision))
                continue
            elif decision.action == "delay":
                key = (JobStatus.PENDING, None, float(job.spec.start_in or 0))
            else:
                key = (JobStatus.PENDING, None, None)
            batches.setdefault(key, []).append(job.id)
        changed = raced = False
        for (status, reason, delay), ids in batches.items():
            fields: dict[str, Any] = {"status": status}
            if status == JobStatus.SKIPPED:
                fields.update(reason=reason, finished_at=now)
            if delay is not None:
                fields["due_at"] = now + timedelta(seconds=delay)
            if status == JobStatus.PENDING:
                self._claim_sending(ids, claimed)
            done = self.store.cas_jobs(ids, [JobStatus.CREATED], **fields)
            raced |= len(done) < len(ids)
            changed |= bool(done)
            view.update(
                _State(j, status, states[j].attempt, states[j].exit_code, reason) for j in done
            )
            if status == JobStatus.PENDING:
                ready.extend((job_id, delay) for job_id in done)
        for job, decision in grouped:
            group = job.spec.resource_group
            assert group is not None
            if not self.groups.take(group, job.id):
                continue  # waits, still created, until the holder finishes (groups.py)
            fields = {"status": JobStatus.PENDING}
            delay = float(job.spec.start_in or 0) if decision.action == "delay" else None
            if delay is not None:
                fields["due_at"] = now + timedelta(seconds=delay)
            self._claim_sending([job.id], claimed)
            if not self.store.cas_job(job.id, [JobStatus.CREATED], **fields):
                # Someone else moved it: a concurrent advance that dispatched it keeps the
                # group (same holder id); a job canceled meanwhile must give it back.
                if self.store.get_job(job.id).status in FINAL_JOB:
                    self._release(job)
                raced = True
                continue
            old = states[job.id]
            view.update([_State(job.id, JobStatus.PENDING, old.attempt, old.exit_code)])
            ready.append((job.id, delay))
            changed = True
        return changed, raced

    def _settle(self, build: BuildRecord, status: BuildStatus) -> None:
        if status == BuildStatus.PENDING and (
            build.started_at is not None or build.status == BuildStatus.RUNNING
        ):
            status = BuildStatus.RUNNING  # a retried job does not un-start its build
        if status == build.status:
            return
        now = utcnow()
        deliverable: StoredBlob | None = None
        if status not in FINAL_BUILD:
            fields: dict[str, Any] = {"status": status}
            if status == BuildStatus.RUNNING and build.started_at is None:
                fields["started_at"] = now
            if status == BuildStatus.MANUAL:
                # Blocked at a manual gate (GitLab's "blocked"): the build did all it will
                # do by itself, so what it made is deliverable now; the gate's jobs, once
                # played, finish the build and its deliverable is written again.
                deliverable = self._write_deliverable(build.id, None, BuildStatus.MANUAL)
                fields["deliverable_digest"] = deliverable.digest
            if self.store.cas_build(build.id, [build.status], **fields):
                self._add_deliverable(build.id, deliverable)
                self.build_changed(build.id)
            return
        fields = {"status": status, "finished_at": now}
        if status == BuildStatus.SUCCESS:
            # Stored before the build's final compare-and-set: if the blob store fails, the
            # build stays unfinished and the next advance (a repeated report, a recovery)
            # stores it. Two settlers may both store one; the CAS picks the build's.
            deliverable = self._write_deliverable(build.id, now)
            fields["deliverable_digest"] = deliverable.digest
        elif build.deliverable_digest:
            fields["deliverable_digest"] = None  # a gate played after all, and it failed
        if not self.store.cas_build(build.id, _NOT_FINAL, **fields):
            return  # settled by someone else
        self._add_deliverable(build.id, deliverable)
        # The hooks that need the jobs (provenance, auto-deploy) act on green builds only:
        # a canceled 10,000-job build is not read and parsed whole while it settles.
        finished = self.store.get_build(build.id, with_jobs=status == BuildStatus.SUCCESS)
        log.info("build %s finished: %s", build.id, status)
        self.build_changed(build.id)
        for hook in self.on_build_finished:
            hook(finished)

    def build_changed(self, build_id: int) -> None:
        """Tell the ``on_build_changed`` hooks that the build's status changed."""
        if not self.on_build_changed:
            return
        try:
            build = self.store.get_build(build_id, with_jobs=False)
        except Exception:  # a DB blip must not fail the transition that already happened
            log.exception("build %s changed, but it could not be read for the hooks", build_id)
            return
        for hook in self.on_build_changed:
            try:
                hook(build)
            except Exception:
                log.exception("on_build_changed hook failed for build %s", build_id)

    def _write_deliverable(
        self,
        build_id: int,
        finished_at: datetime | None,
        status: BuildStatus = BuildStatus.SUCCESS,
    ) -> StoredBlob:
        build = dataclasses.replace(
            self.store.get_build(build_id), status=status, finished_at=finished_at
        )
        return self.blobs.put_stream(iter([deliverable_manifest(build)]))

    def _add_deliverable(self, build_id: int, deliverable: StoredBlob | None) -> None:
        """Record a stored deliverable as the build's artifact (it keeps the blob alive)."""
        if deliverable is not None:
            self.store.add_artifact(
                build_id=build_id,
                job_id=None,
                name="deliverable.json",
                kind=ArtifactKind.DELIVERABLE,
                digest=deliverable.digest,
                size=deliverable.size,
            )


def digest_text(text: str) -> str:
    """sha256 digest string of a text, as used for pipeline files."""
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
