"""The store: persistence of builds, jobs, artifacts and logs, returning records.

Every job status change goes through :meth:`Store.cas_job` — one
``UPDATE … WHERE id=? AND status IN (…) [AND attempt=?]`` — or its bulk forms
:meth:`Store.cas_jobs` and :meth:`Store.cas_jobs_of_build` (the same WHERE, many rows,
``RETURNING`` the ids that changed), so duplicated messages, lost workers and concurrent
completions can never apply a transition twice.

Big builds (10,000 jobs) stay cheap: jobs are inserted in one statement, a build's jobs
are read with one query and its artifacts with another, :meth:`Store.job_changes` reads
only the columns the coordinator decides on (of the jobs changed since it last looked),
and :meth:`Store.job_lines` only what the build document shows (no job spec is parsed
for either). A job's spec never changes, so
specs are read as their stored JSON text and parsed once per process (:func:`_spec`,
keyed by that text: nothing can go stale).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    Text,
    and_,
    bindparam,
    false,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session, sessionmaker

from farm.db import job_revs
from farm.db.caches import CacheIndexMixin
from farm.db.logs import LogsMixin, append_tail
from farm.db.project_secrets import ProjectSecretsMixin
from farm.db.resource_groups import ResourceGroupsMixin
from farm.db.secrets import SecretBox
from farm.db.session import aware, transaction
from farm.db.tables import ArtifactRow, BuildRow, JobRow
from farm.db.workers import WorkersMixin
from farm.domain.clock import utcnow
from farm.domain.logs import Tail
from farm.domain.records import (
    ArtifactRecord,
    BuildOrigin,
    BuildRecord,
    JobRecord,
    NewBuild,
    PipelineSource,
)
from farm.domain.specs import JobSpec
from farm.domain.statuses import ACTIVE_BUILD, BuildStatus, JobStatus
from farm.errors import NotFound

_IN_CHUNK = 500  # ids per ``IN (…)``: far below every database's parameter limit
_JOBS = cast(Table, JobRow.__table__)
_ARTIFACTS = cast(Table, ArtifactRow.__table__)


@dataclass(frozen=True, slots=True)
class Outboxed:
    """A pending job with what the outbox knows of its message (``ports.Queued``)."""

    job: JobRecord
    queued_at: datetime | None
    queued_epoch: str | None
    due_at: datetime | None


@dataclass(frozen=True, slots=True)
class JobLine:
    """A job as the build document lists it: its state and the few spec fields it shows."""

    id: int
    build_id: int
    name: str
    stage: str
    status: str
    attempt: int
    exit_code: int | None
    reason: str | None
    worker: str | None
    started_at: datetime | None
    finished_at: datetime | None
    coverage: float | None
    image: str | None
    when: str
    allow_failure: bool
    needs: tuple[str, ...] | None
    artifacts: tuple[ArtifactRecord, ...]
    test_report: dict[str, Any] | None = None  # a messages.TestReport
    environment: dict[str, Any] | None = None  # the spec's environment: (name, url, action)
    stuck_reason: str | None = None  # shown while pending (farm.coordinator.stuck)
    timeline: dict[str, float] | None = None  # issue 11 (farm/domain/timeline.py)
    cached: bool = False  # its result was reused from an identical earlier job


# Who holds a job's current attempt: (attempt, claiming token id, job token hash).
Holder = tuple[int, int | None, str | None]


def _job_columns() -> list[Any]:
    """Every job column, the spec as its JSON text (parsed by :func:`_spec`, once)."""
    return [*(c for c in _JOBS.c if c.name != "spec"), sql_cast(_JOBS.c.spec, Text).label("spec")]


def _select_jobs() -> Select[Any]:
    """Every job column, the spec as its JSON text (parsed by :func:`_spec`, once)."""
    return select(*_job_columns())


@lru_cache(maxsize=50_000)
def _spec_of_text(text: str) -> JobSpec:
    # Shared by every record of the same stored spec: JobSpec is frozen, and nothing
    # changes its dicts in place (callers copy them: assignment, spawn).
    return JobSpec.from_dict(json.loads(text))


def _spec(value: str | dict[str, Any]) -> JobSpec:
    # Text from _select_jobs; a driver may still hand back the parsed JSON.
    return _spec_of_text(value) if isinstance(value, str) else JobSpec.from_dict(value)


def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    for i in range(0, len(ids), _IN_CHUNK):
        yield ids[i : i + _IN_CHUNK]


def _artifact(row: Any) -> ArtifactRecord:
    return ArtifactRecord(
        id=row.id,
        build_id=row.build_id,
        job_id=row.job_id,
        name=row.name,
        kind=row.kind,
        digest=row.digest,
        size=row.size,
        created_at=aware(row.created_at),
        expires_at=aware(row.expires_at),
        files=tuple(row.files or ()),
    )


def _environment(spec: JobSpec) -> dict[str, Any] | None:
    """The ``jobs.environment`` column of a spec: its ``environment:``, as JSON."""
    env = spec.environment
    return None if env is None else {"name": env.name, "url": env.url, "action": env.action}


def _job(row: Any, artifacts: Iterable[Any] = ()) -> JobRecord:
    """A record of a row of :func:`_select_jobs` (by mapping: 10x faster than attributes)."""
    r = row._mapping
    return JobRecord(
        id=r["id"],
        build_id=r["build_id"],
        name=r["name"],
        stage=r["stage"],
        position=r["position"],
        spec=_spec(r["spec"]),
        status=JobStatus(r["status"]),
        attempt=r["attempt"],
        queue=r["queue"],
        exit_code=r["exit_code"],
        reason=r["reason"],
        worker=r["worker"],
        started_at=aware(r["started_at"]),
        finished_at=aware(r["finished_at"]),
        heartbeat_at=aware(r["heartbeat_at"]),
        lost_count=r["lost_count"],
        log_bytes=r["log_bytes"],
        coverage=r["coverage"],
        artifacts=tuple(_artifact(a) for a in artifacts),
        stuck_reason=r["stuck_reason"],
        test_report=r["test_report"],
        queued_at=aware(r["queued_at"]),
        timeline=r["timeline"],
        cached_from=r["cached_from"],
    )


def _build(box: SecretBox, row: BuildRow, jobs: tuple[JobRecord, ...] = ()) -> BuildRecord:
    return BuildRecord(
        id=row.id,
        project=row.project,
        repo=row.repo,
        ref=row.ref,
        commit=row.commit,
        status=BuildStatus(row.status),
        created_at=aware(row.created_at),
        pipeline_file=row.pipeline_file,
        pipeline_digest=row.pipeline_digest,
        snapshot_digest=row.snapshot_digest,
        stages=tuple(row.stages),
        variables=dict(row.variables or {}),
        started_at=aware(row.started_at),
        finished_at=aware(row.finished_at),
        cancel_requested=row.cancel_requested,
        deliverable_digest=row.deliverable_digest,
        error=row.error,
        secrets=box.open(row.secrets, row.id),  # decrypted here, in memory only
        jobs=jobs,
        parent_build_id=row.parent_build_id,
        source=row.source or PipelineSource.API,
        origin=_origin(row),
        ref_kind=row.ref_kind or "branch",
        default_branch=row.default_branch or "main",
    )


def _origin(row: BuildRow) -> BuildOrigin | None:
    if not (row.origin_host and row.origin_api_url and row.origin_project):
        return None
    return BuildOrigin(row.origin_host, row.origin_api_url, row.origin_project)


class Store(CacheIndexMixin, ProjectSecretsMixin, WorkersMixin, ResourceGroupsMixin, LogsMixin):
    """SQLAlchemy-backed persistence; methods are short transactions."""

    def __init__(self, sessions: sessionmaker[Session], secrets: SecretBox | None = None) -> None:
        self._sessions = sessions
        # Encrypts builds.secrets; without one, a key of this process only (tests).
        self._box = secrets if secrets is not None else SecretBox.ephemeral()

    def _tx(self) -> AbstractContextManager[Session]:
        return transaction(self._sessions)

    def check_secret_key(self) -> None:
        """Raise a one-line ConfigError if the newest stored secrets do not decrypt."""
        with self._tx() as s:
            row = s.execute(
                select(BuildRow.id, BuildRow.secrets)
                .where(BuildRow.secrets.is_not(None))
                .order_by(BuildRow.id.desc())
                .limit(1)
            ).first()
        if row is not None:
            self._box.open(row.secrets, row.id)

    # --- builds ----------------------------------------------------------------------

    def create_build(self, new: NewBuild, status: BuildStatus) -> int:
        """Persist a build and all its jobs (status ``created``) in one transaction."""
        with self._tx() as s:
            row = BuildRow(
                project=new.project,
                repo=new.repo,
                ref=new.ref,
                commit=new.commit,
                status=status,
                pipeline_file=new.pipeline_file,
                pipeline_digest=new.pipeline_digest,
                snapshot_digest=new.snapshot_digest,
                stages=list(new.stages),
                variables=dict(new.variables),
                created_at=utcnow(),
                cancel_requested=False,
                secrets=self._box.seal(new.secrets),  # encrypted at rest
                parent_build_id=new.parent_build_id,
                source=new.source,
                ref_kind=new.ref_kind,
                default_branch=new.default_branch,
                origin_host=new.origin.host if new.origin else None,
                origin_api_url=new.origin.api_url if new.origin else None,
                origin_project=new.origin.project if new.origin else None,
            )
            s.add(row)
            s.flush()
            jobs = [
                {
                    "build_id": row.id,
                    "name": spec.name,
                    "stage": spec.stage,
                    "position": pos,
                    "spec": spec.to_dict(),
                    "status": JobStatus.CREATED,
                    "attempt": 1,
                    "queue": queue,
                    "lost_count": 0,
                    "log_bytes": 0,
                    "resource_group": spec.resource_group,
                    "environment": _environment(spec),
                }
                for pos, (spec, queue) in enumerate(new.jobs)
            ]
            if jobs:  # one executemany, not an ORM object per job
                s.execute(insert(_JOBS), jobs)
            return int(row.id)

    def get_build(self, build_id: int, with_jobs: bool = True) -> BuildRecord:
        """A build with its jobs and their artifacts (NotFound if none); ``with_jobs=False``:
        the build's own fields only (``jobs`` empty), one primary-key read."""
        with self._sessions() as s:
            row = s.get(BuildRow, build_id)
            if row is None:
                raise NotFound(f"build {build_id} does not exist")
            if not with_jobs:
                return _build(self._box, row)
            # Plain rows, not ORM objects: a 10,000-job build is read in two queries.
            job_rows = s.execute(
                _select_jobs().where(_JOBS.c.build_id == build_id).order_by(_JOBS.c.position)
            ).all()
            arts = self._job_artifacts(s, build_id)
            return _build(self._box, row, tuple(_job(j, arts.get(j.id, ())) for j in job_rows))

    def jobs_of_build(
        self,
        build_id: int,
        *,
        names: Collection[str] | None = None,
        stages: Collection[str] | None = None,
    ) -> list[JobRecord]:
        """Some jobs of a build with their artifacts, by position: those called one of
        ``names`` or in one of ``stages`` (either filter may be None: no filter on it;
        both None: every job). A claim reads only the jobs its assignment needs."""
        c = _JOBS.c
        q = _select_jobs().where(c.build_id == build_id)
        if names is not None:
            q = q.where(c.name.in_(list(names)))
        if stages is not None:
            q = q.where(c.stage.in_(list(stages)))
        with self._sessions() as s:
            rows = s.execute(q.order_by(c.position)).all()
            if not rows:
                return []
            ids = {r.id for r in rows}
            if len(ids) > 500:  # not a bound-parameter per job: the build's, filtered here
                arts = self._job_artifacts(s, build_id)
            else:
                arts = {}
                aq = select(_ARTIFACTS).where(_ARTIFACTS.c.job_id.in_(ids))
                for a in s.execute(aq.order_by(_ARTIFACTS.c.id)):
                    arts.setdefault(a.job_id, []).append(a)
            return [_job(r, arts.get(r.id, ())) for r in rows]

    @staticmethod
    def _job_artifacts(s: Session, build_id: int) -> dict[int, list[Any]]:
        arts: dict[int, list[Any]] = {}
        q = select(_ARTIFACTS).where(_ARTIFACTS.c.build_id == build_id).order_by(_ARTIFACTS.c.id)
        for a in s.execute(q):
            if a.job_id is not None:
                arts.setdefault(a.job_id, []).append(a)
        return arts

    def job_lines(self, build_id: int) -> tuple[BuildRecord, list[JobLine]]:
        """The build (without jobs) and its jobs as the build document shows them.

        One query for the jobs — the few spec fields shown are extracted by the database
        (JSON paths), so no spec is parsed — and one for the artifacts.
        """
        spec = JobRow.spec
        with self._sessions() as s:
            row = s.get(BuildRow, build_id)
            if row is None:
                raise NotFound(f"build {build_id} does not exist")
            c = _JOBS.c
            rows = s.execute(
                select(
                    c.id,
                    c.name,
                    c.stage,
                    c.status,
                    c.attempt,
                    c.exit_code,
                    c.reason,
                    c.worker,
                    c.started_at,
                    c.finished_at,
                    c.coverage,
                    c.stuck_reason,
                    spec["image"].as_string().label("image"),
                    spec["when"].as_string().label("when"),
                    spec["allow_failure"].as_boolean().label("allow_failure"),
                    spec["needs"].label("needs"),
                    c.test_report,
                    c.environment,
                    c.timeline,
                    c.cached_from,
                )
                .where(c.build_id == build_id)
                .order_by(c.position)
            ).all()
            arts = self._job_artifacts(s, build_id)
            lines = [
                JobLine(
                    id=r.id,
                    build_id=build_id,
                    name=r.name,
                    stage=r.stage,
                    status=r.status,
                    attempt=r.attempt,
                    exit_code=r.exit_code,
                    reason=r.reason,
                    worker=r.worker,
                    started_at=aware(r.started_at),
                    finished_at=aware(r.finished_at),
                    coverage=r.coverage,
                    image=r.image,
                    when=r.when or "on_success",
                    allow_failure=bool(r.allow_failure),
                    needs=None if r.needs is None else tuple(n["job"] for n in r.needs),
                    artifacts=tuple(_artifact(a) for a in arts.get(r.id, ())),
                    stuck_reason=r.stuck_reason,
                    test_report=r.test_report,
                    environment=r.environment,
                    timeline=r.timeline,
                    cached=r.cached_from is not None,
                )
                for r in rows
            ]
            return _build(self._box, row), lines

    def list_builds(
        self,
        limit: int = 50,
        project: str | None = None,
        ref: str | None = None,
        status: str | None = None,
        offset: int = 0,
    ) -> list[BuildRecord]:
        """Newest builds first, without their jobs; ``offset`` skips the newest ones."""
        with self._sessions() as s:
            q = select(BuildRow).order_by(BuildRow.id.desc()).limit(limit).offset(offset)
            if status:
                q = q.where(BuildRow.status == status)
            if project:
                q = q.where(BuildRow.project == project)
            if ref:
                q = q.where(BuildRow.ref == ref)
            return [_build(self._box, r) for r in s.scalars(q)]

    def cas_build(self, build_id: int, from_statuses: Iterable[str], **fields: Any) -> bool:
        """Set ``fields`` on the build only if its status is one of ``from_statuses``."""
        with self._tx() as s:
            res = s.execute(
                update(BuildRow)
                .where(BuildRow.id == build_id, BuildRow.status.in_(list(from_statuses)))
                .values(**fields)
            )
            return bool(res.rowcount)  # type: ignore[attr-defined]

    def update_build(self, build_id: int, **fields: Any) -> None:
        """Unconditional update of non-status fields."""
        with self._tx() as s:
            s.execute(update(BuildRow).where(BuildRow.id == build_id).values(**fields))

    def active_build_ids(self) -> list[int]:
        """Builds not yet final (for recovery after a coordinator restart)."""
        with self._sessions() as s:
            q = select(BuildRow.id).where(BuildRow.status.in_(list(ACTIVE_BUILD)))
            return list(s.scalars(q))

    # --- jobs ------------------------------------------------------------------------

    def get_job(self, job_id: int) -> JobRecord:
        """One job with its artifacts (NotFound if none)."""
        with self._sessions() as s:
            row = s.execute(_select_jobs().where(_JOBS.c.id == job_id)).first()
            if row is None:
                raise NotFound(f"job {job_id} does not exist")
            arts = s.scalars(select(ArtifactRow).where(ArtifactRow.job_id == job_id)).all()
            return _job(row, arts)

    def job_and_holder(self, job_id: int) -> tuple[JobRecord, Holder]:
        """A job without its artifacts, and who holds its current attempt (a worker's
        finish report reads both: one query). NotFound if there is no such job."""
        with self._sessions() as s:
            row = s.execute(_select_jobs().where(_JOBS.c.id == job_id)).first()
            if row is None:
                raise NotFound(f"job {job_id} does not exist")
            r = row._mapping
            return _job(row), (r["attempt"], r["claimed_by_token"], r["job_token_hash"])

    def attempt_holder(self, job_id: int) -> Holder | None:
        """Who holds a job's current attempt: (attempt, claiming token id, job token hash)."""
        with self._sessions() as s:
            row = s.execute(
                select(JobRow.attempt, JobRow.claimed_by_token, JobRow.job_token_hash).where(
                    JobRow.id == job_id
                )
            ).first()
            return (row[0], row[1], row[2]) if row is not None else None

    def job_ids(self, build_id: int) -> list[int]:
        """The ids of a build's jobs, in definition order."""
        q = select(_JOBS.c.id).where(_JOBS.c.build_id == build_id).order_by(_JOBS.c.position)
        with self._sessions() as s:
            return list(s.scalars(q))

    def job_changes(self, build_id: int, after: int) -> tuple[int, list[job_revs.State]]:
        """The build's change number and its jobs whose state changed after ``after``
        (every job for a negative one), by position (``farm/db/job_revs.py``)."""
        with self._sessions() as s:
            return job_revs.changes(s, build_id, after)

    def cas_job(
        self,
        job_id: int,
        from_statuses: Iterable[str],
        expect_attempt: int | None = None,
        **fields: Any,
    ) -> bool:
        """Compare-and-set on a job: applies ``fields`` only from the given state/attempt."""
        with self._tx() as s:
            # Core, not ORM: an ORM update evaluates its criteria against the session's
            # objects first, a cost paid on every claim, heartbeat and finish.
            c = _JOBS.c
            q = update(_JOBS).where(c.id == job_id, c.status.in_(list(from_statuses)))
            if expect_attempt is not None:
                q = q.where(c.attempt == expect_attempt)
            if job_revs.touches_state(fields):
                stamped = job_revs.stamp(s, job_id)
                if stamped is None:
                    return False
                fields = {**fields, "rev": stamped[1]}
            res = s.execute(q.values(**fields))
            return bool(res.rowcount)  # type: ignore[attr-defined]

    def claim_job(self, job_id: int, attempt: int, **fields: Any) -> JobRecord | None:
        """Compare-and-set a pending ``attempt`` to ``fields`` (its claim) and return the
        job as it is then, its artifacts aside (a pending job has none): one transaction,
        no read back. None if the attempt was not pending."""
        c = _JOBS.c
        with self._tx() as s:
            stamped = job_revs.stamp(s, job_id)
            if stamped is None:
                return None
            q = (
                update(_JOBS)
                .where(c.id == job_id, c.status == JobStatus.PENDING, c.attempt == attempt)
                .values(**fields, rev=stamped[1])
                .returning(*_job_columns())
            )
            row = s.execute(q).first()
            return None if row is None else _job(row)

    def cas_jobs(
        self, job_ids: Iterable[int], from_statuses: Iterable[str], **fields: Any
    ) -> list[int]:
        """Bulk compare-and-set: ``fields`` on each of ``job_ids`` whose status is one of
        ``from_statuses``; returns the ids that changed (``UPDATE … RETURNING``)."""
        ids = list(job_ids)
        statuses = list(from_statuses)
        done: list[int] = []
        if not ids:
            return done
        with self._tx() as s:
            builds: list[int | None] = [None]
            if job_revs.touches_state(fields):
                builds = list(job_revs.builds_of(s, ids))
            for build_id in builds:
                values = dict(fields)
                where: list[ColumnElement[bool]] = [_JOBS.c.status.in_(statuses)]
                if build_id is not None:
                    values["rev"] = job_revs.bump(s, build_id)
                    where.append(_JOBS.c.build_id == build_id)
                for part in _chunks(ids):
                    q = (
                        update(_JOBS)
                        .where(_JOBS.c.id.in_(list(part)), *where)
                        .values(**values)
                        .returning(_JOBS.c.id)
                    )
                    done.extend(s.execute(q).scalars())
        return done

    def cas_jobs_of_build(
        self, build_id: int, from_statuses: Iterable[str], **fields: Any
    ) -> list[int]:
        """One statement: ``fields`` on every job of the build whose status is one of
        ``from_statuses`` (a cancel); returns the ids that changed."""
        with self._tx() as s:
            if job_revs.touches_state(fields):
                fields = {**fields, "rev": job_revs.bump(s, build_id)}
            q = (
                update(_JOBS)
                .where(_JOBS.c.build_id == build_id, _JOBS.c.status.in_(list(from_statuses)))
                .values(**fields)
                .returning(_JOBS.c.id)
            )
            return list(s.execute(q).scalars())

    def jobs_with_status(self, statuses: Iterable[str]) -> list[JobRecord]:
        """Every job in one of ``statuses`` (watchdog and recovery)."""
        with self._sessions() as s:
            q = _select_jobs().where(_JOBS.c.status.in_(list(statuses))).order_by(_JOBS.c.id)
            return [_job(r) for r in s.execute(q)]

    def last_durations(self, project: str, names: Iterable[str]) -> dict[str, float]:
        """Seconds from claim to finish of the latest successful, executed (not reused)
        job of each name in ``project`` (issue 11: critical-path-first dispatch)."""
        wanted = sorted(set(names))
        if not wanted:
            return {}
        c, b = _JOBS.c, cast(Table, BuildRow.__table__).c
        out: dict[str, float] = {}
        with self._sessions() as s:
            for i in range(0, len(wanted), _IN_CHUNK):
                latest = (
                    select(func.max(c.id))
                    .join_from(_JOBS, BuildRow.__table__, b.id == c.build_id)
                    .where(
                        b.project == project,
                        c.name.in_(wanted[i : i + _IN_CHUNK]),
                        c.status == JobStatus.SUCCESS,
                        c.cached_from.is_(None),
                        c.started_at.is_not(None),
                        c.finished_at.is_not(None),
                    )
                    .group_by(c.name)
                )
                q = select(c.name, c.started_at, c.finished_at).where(c.id.in_(latest))
                for name, started, finished in s.execute(q):
                    out[name] = max(0.0, (aware(finished) - aware(started)).total_seconds())
        return out

    # --- the dispatch outbox -------------------------------------------------------------

    def outbox(
        self,
        *,
        epoch: str | None,
        stale_before: datetime | None,
        after_id: int = 0,
        limit: int = 500,
    ) -> list[Outboxed]:
        """Pending jobs whose message may be missing, by id from ``after_id`` on: never
        queued; queued to another broker ``epoch`` than this one (when given); or queued
        (and due) before ``stale_before`` (when given)."""
        c = _JOBS.c
        maybe: list[ColumnElement[bool]] = [c.queued_at.is_(None)]
        if epoch is not None:
            maybe.append(c.queued_epoch.is_distinct_from(epoch))
        if stale_before is not None:
            maybe.append(
                and_(
                    c.queued_at < stale_before,
                    or_(c.due_at.is_(None), c.due_at < stale_before),
                )
            )
        q = (
            _select_jobs()
            .where(c.status == JobStatus.PENDING, c.id > after_id, or_(false(), *maybe))
            .order_by(c.id)
            .limit(limit)
        )
        with self._sessions() as s:
            return [
                Outboxed(_job(r), aware(r.queued_at), r.queued_epoch, aware(r.due_at))
                for r in s.execute(q)
            ]

    def mark_queued(
        self, attempts: Iterable[tuple[int, int]], at: datetime, epoch: str | None
    ) -> None:
        """Record that the broker took the message of each (job, attempt) still in that
        attempt, whatever its status: a worker may have claimed it already (the timeline's
        ``queued`` mark); the outbox only ever reads pending jobs."""
        params = [{"jid": j, "att": a} for j, a in attempts]
        if not params:
            return
        q = (
            update(_JOBS)
            .where(
                _JOBS.c.id == bindparam("jid"),
                _JOBS.c.attempt == bindparam("att"),
            )
            .values(queued_at=at, queued_epoch=epoch)
        )
        with self._tx() as s:
            s.connection().execute(q, params)

    def set_timelines(self, items: Iterable[tuple[int, int, dict[str, float]]]) -> None:
        """Store each (job, attempt, timeline) while the job is still at that attempt, in
        one transaction (``Coordinator.flush_marks``)."""
        params = [{"jid": j, "att": a, "tl": tl} for j, a, tl in items]
        if not params:
            return
        q = (
            update(_JOBS)
            .where(_JOBS.c.id == bindparam("jid"), _JOBS.c.attempt == bindparam("att"))
            .values(timeline=bindparam("tl"))
        )
        with self._tx() as s:
            s.connection().execute(q, params)

    # --- artifacts -------------------------------------------------------------------

    def add_artifact(
        self,
        *,
        build_id: int,
        job_id: int | None,
        name: str,
        kind: str,
        digest: str,
        size: int,
        expires_at: datetime | None = None,
        files: list[str] | None = None,
    ) -> ArtifactRecord:
        """Record a stored blob as an artifact of a build (and job)."""
        with self._tx() as s:
            row = ArtifactRow(
                build_id=build_id,
                job_id=job_id,
                name=name,
                kind=kind,
                digest=digest,
                size=size,
                created_at=utcnow(),
                expires_at=expires_at,
                files=files,
            )
            s.add(row)
            s.flush()
            return _artifact(row)

    def finish_attempt(
        self,
        job_id: int,
        attempt: int,
        artifacts: Sequence[Mapping[str, Any]],
        tail: Tail | None = None,
        **fields: Any,
    ) -> bool:
        """The end of a running attempt, its artifacts and its log's ``tail``, in one
        transaction."""
        c = _JOBS.c
        with self._tx() as s:
            stamped = job_revs.stamp(s, job_id)
            if stamped is None:
                return False
            build_id, rev = stamped
            q = update(_JOBS).where(
                c.id == job_id, c.status == JobStatus.RUNNING, c.attempt == attempt
            )
            done = s.execute(q.values(**fields, rev=rev))
            if not done.rowcount:  # type: ignore[attr-defined]
                return False
            if tail is not None:
                append_tail(s, job_id, tail)
            now = utcnow()
            for art in artifacts:
                s.add(ArtifactRow(build_id=build_id, job_id=job_id, created_at=now, **art))
            return True

    def find_artifacts(self, digest: str) -> list[ArtifactRecord]:
        """Artifacts stored under ``digest``."""
        with self._sessions() as s:
            rows = s.scalars(select(ArtifactRow).where(ArtifactRow.digest == digest))
            return [_artifact(r) for r in rows]

    def count_builds(self) -> int:
        """How many builds exist (metrics)."""
        with self._sessions() as s:
            return int(s.scalar(select(func.count(BuildRow.id))) or 0)

    def job_counts(self) -> dict[str, int]:
        """How many jobs are in each status (metrics)."""
        with self._sessions() as s:
            rows = s.execute(select(JobRow.status, func.count(JobRow.id)).group_by(JobRow.status))
            return {str(r[0]): int(r[1]) for r in rows}
