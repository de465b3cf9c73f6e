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

from collections.abc import Collection, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    false,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session, sessionmaker

from farm.db import job_revs
from farm.db.caches import CacheIndexMixin
from farm.db.job_writes import JobWritesMixin
from farm.db.logs import LogsMixin
from farm.db.project_secrets import ProjectSecretsMixin
from farm.db.reads import JobLine as JobLine  # re-exported: the API imports it here
from farm.db.reads import ReadsMixin
from farm.db.resource_groups import ResourceGroupsMixin
from farm.db.rows import (
    ARTIFACTS,
    BUILD_BY_ID,
    JOB_BY_ID,
    JOBS,
    Holder,
    artifact_record,
    build_record,
    environment_of,
    job_artifacts,
    job_record,
    select_jobs,
)
from farm.db.secrets import SecretBox
from farm.db.session import aware, transaction
from farm.db.tables import ArtifactRow, BuildRow, JobRow
from farm.db.workers import WorkersMixin
from farm.domain.clock import utcnow
from farm.domain.records import (
    ArtifactRecord,
    BuildRecord,
    JobRecord,
    NewBuild,
)
from farm.domain.statuses import ACTIVE_BUILD, BuildStatus, JobStatus
from farm.errors import NotFound


@dataclass(frozen=True, slots=True)
class Outboxed:
    """A pending job with what the outbox knows of its message (``ports.Queued``)."""

    job: JobRecord
    queued_at: datetime | None
    queued_epoch: str | None
    due_at: datetime | None


class Store(
    ReadsMixin,
    JobWritesMixin,
    CacheIndexMixin,
    ProjectSecretsMixin,
    WorkersMixin,
    ResourceGroupsMixin,
    LogsMixin,
):
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
                    "environment": environment_of(spec),
                }
                for pos, (spec, queue) in enumerate(new.jobs)
            ]
            if jobs:  # one executemany, not an ORM object per job
                s.execute(insert(JOBS), jobs)
            return int(row.id)

    def get_build(self, build_id: int, with_jobs: bool = True) -> BuildRecord:
        """A build with its jobs and their artifacts (NotFound if none); ``with_jobs=False``:
        the build's own fields only (``jobs`` empty), one primary-key read."""
        with self._sessions() as s:
            row = s.execute(BUILD_BY_ID, {"build_id": build_id}).first()
            if row is None:
                raise NotFound(f"build {build_id} does not exist")
            if not with_jobs:
                return build_record(self._box, row)
            # Plain rows, not ORM objects: a 10,000-job build is read in two queries.
            job_rows = s.execute(
                select_jobs().where(JOBS.c.build_id == build_id).order_by(JOBS.c.position)
            ).all()
            arts = job_artifacts(s, build_id)
            jobs = tuple(job_record(j, arts.get(j.id, ())) for j in job_rows)
            return build_record(self._box, row, jobs)

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
        c = JOBS.c
        q = select_jobs().where(c.build_id == build_id)
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
                arts = job_artifacts(s, build_id)
            else:
                arts = {}
                aq = select(ARTIFACTS).where(ARTIFACTS.c.job_id.in_(ids))
                for a in s.execute(aq.order_by(ARTIFACTS.c.id)):
                    arts.setdefault(a.job_id, []).append(a)
            return [job_record(r, arts.get(r.id, ())) for r in rows]

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
            row = s.execute(JOB_BY_ID, {"job_id": job_id}).first()
            if row is None:
                raise NotFound(f"job {job_id} does not exist")
            arts = s.scalars(select(ArtifactRow).where(ArtifactRow.job_id == job_id)).all()
            return job_record(row, arts)

    def job_and_holder(self, job_id: int) -> tuple[JobRecord, Holder]:
        """A job without its artifacts, and who holds its current attempt (a worker's
        finish report reads both: one query). NotFound if there is no such job."""
        with self._sessions() as s:
            row = s.execute(JOB_BY_ID, {"job_id": job_id}).first()
            if row is None:
                raise NotFound(f"job {job_id} does not exist")
            r = row._mapping
            return job_record(row), (r["attempt"], r["claimed_by_token"], r["job_token_hash"])

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
        q = select(JOBS.c.id).where(JOBS.c.build_id == build_id).order_by(JOBS.c.position)
        with self._sessions() as s:
            return list(s.scalars(q))

    def job_changes(self, build_id: int, after: int) -> tuple[int, list[job_revs.State]]:
        """The build's change number and its jobs whose state changed after ``after``
        (every job for a negative one), by position (``farm/db/job_revs.py``)."""
        with self._sessions() as s:
            return job_revs.changes(s, build_id, after)

    def jobs_with_status(self, statuses: Iterable[str]) -> list[JobRecord]:
        """Every job in one of ``statuses`` (watchdog and recovery)."""
        with self._sessions() as s:
            q = select_jobs().where(JOBS.c.status.in_(list(statuses))).order_by(JOBS.c.id)
            return [job_record(r) for r in s.execute(q)]

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
        c = JOBS.c
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
            select_jobs()
            .where(c.status == JobStatus.PENDING, c.id > after_id, or_(false(), *maybe))
            .order_by(c.id)
            .limit(limit)
        )
        with self._sessions() as s:
            return [
                Outboxed(job_record(r), aware(r.queued_at), r.queued_epoch, aware(r.due_at))
                for r in s.execute(q)
            ]

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
            return artifact_record(row)

    def find_artifacts(self, digest: str) -> list[ArtifactRecord]:
        """Artifacts stored under ``digest``."""
        with self._sessions() as s:
            rows = s.scalars(select(ArtifactRow).where(ArtifactRow.digest == digest))
            return [artifact_record(r) for r in rows]
