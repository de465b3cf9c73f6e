"""The store: persistence of builds, jobs, artifacts and logs, returning records.

Every job status change goes through :meth:`Store.cas_job` — one
``UPDATE … WHERE id=? AND status IN (…) [AND attempt=?]`` — so duplicated
messages, lost workers and concurrent completions can never apply a transition twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from farm.db.caches import CacheIndexMixin
from farm.db.session import aware, transaction
from farm.db.tables import ArtifactRow, BuildRow, JobRow, LogChunkRow, ResourceGroupRow
from farm.domain.clock import utcnow
from farm.domain.records import ArtifactRecord, BuildRecord, JobRecord, NewBuild
from farm.domain.specs import JobSpec
from farm.domain.statuses import ACTIVE_BUILD, BuildStatus, JobStatus
from farm.errors import NotFound


def _artifact(row: ArtifactRow) -> ArtifactRecord:
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


def _job(row: JobRow, artifacts: Iterable[ArtifactRow] = ()) -> JobRecord:
    return JobRecord(
        id=row.id,
        build_id=row.build_id,
        name=row.name,
        stage=row.stage,
        position=row.position,
        spec=JobSpec.from_dict(row.spec),
        status=JobStatus(row.status),
        attempt=row.attempt,
        queue=row.queue,
        exit_code=row.exit_code,
        reason=row.reason,
        worker=row.worker,
        started_at=aware(row.started_at),
        finished_at=aware(row.finished_at),
        heartbeat_at=aware(row.heartbeat_at),
        lost_count=row.lost_count,
        log_bytes=row.log_bytes,
        coverage=row.coverage,
        artifacts=tuple(_artifact(a) for a in artifacts),
    )


def _build(row: BuildRow, jobs: tuple[JobRecord, ...] = ()) -> BuildRecord:
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
        secrets=dict(row.secrets or {}),
        jobs=jobs,
        parent_build_id=row.parent_build_id,
    )


class Store(CacheIndexMixin):
    """SQLAlchemy-backed persistence; methods are short transactions."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def _tx(self) -> AbstractContextManager[Session]:
        return transaction(self._sessions)

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
                secrets=dict(new.secrets) or None,
                parent_build_id=new.parent_build_id,
            )
            s.add(row)
            s.flush()
            for pos, (spec, queue) in enumerate(new.jobs):
                s.add(
                    JobRow(
                        build_id=row.id,
                        name=spec.name,
                        stage=spec.stage,
                        position=pos,
                        spec=spec.to_dict(),
                        status=JobStatus.CREATED,
                        attempt=1,
                        queue=queue,
                        lost_count=0,
                        log_bytes=0,
                        resource_group=spec.resource_group,
                    )
                )
            return row.id

    def get_build(self, build_id: int) -> BuildRecord:
        """A build with its jobs and their artifacts (NotFound if none)."""
        with self._sessions() as s:
            row = s.get(BuildRow, build_id)
            if row is None:
                raise NotFound(f"build {build_id} does not exist")
            job_rows = s.scalars(
                select(JobRow).where(JobRow.build_id == build_id).order_by(JobRow.position)
            ).all()
            arts: dict[int, list[ArtifactRow]] = {}
            for a in s.scalars(select(ArtifactRow).where(ArtifactRow.build_id == build_id)):
                if a.job_id is not None:
                    arts.setdefault(a.job_id, []).append(a)
            return _build(row, tuple(_job(j, arts.get(j.id, ())) for j in job_rows))

    def list_builds(
        self, limit: int = 50, project: str | None = None, ref: str | None = None
    ) -> list[BuildRecord]:
        """Newest builds first, without their jobs."""
        with self._sessions() as s:
            q = select(BuildRow).order_by(BuildRow.id.desc()).limit(limit)
            if project:
                q = q.where(BuildRow.project == project)
            if ref:
                q = q.where(BuildRow.ref == ref)
            return [_build(r) for r in s.scalars(q)]

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
            row = s.get(JobRow, job_id)
            if row is None:
                raise NotFound(f"job {job_id} does not exist")
            arts = s.scalars(select(ArtifactRow).where(ArtifactRow.job_id == job_id)).all()
            return _job(row, arts)

    def cas_job(
        self,
        job_id: int,
        from_statuses: Iterable[str],
        expect_attempt: int | None = None,
        **fields: Any,
    ) -> bool:
        """Compare-and-set on a job: applies ``fields`` only from the given state/attempt."""
        with self._tx() as s:
            q = update(JobRow).where(JobRow.id == job_id, JobRow.status.in_(list(from_statuses)))
            if expect_attempt is not None:
                q = q.where(JobRow.attempt == expect_attempt)
            res = s.execute(q.values(**fields))
            return bool(res.rowcount)  # type: ignore[attr-defined]

    def jobs_with_status(self, statuses: Iterable[str]) -> list[JobRecord]:
        """Every job in one of ``statuses`` (watchdog and recovery)."""
        with self._sessions() as s:
            q = select(JobRow).where(JobRow.status.in_(list(statuses))).order_by(JobRow.id)
            return [_job(r) for r in s.scalars(q)]

    # --- resource groups ---------------------------------------------------------------

    def take_resource_group(self, name: str, job_id: int, stale: int | None = None) -> bool:
        """Make ``job_id`` the holder of group ``name`` if it is free (or already its own).

        With ``stale``, take it over from that (finished) holder instead. One UPDATE with
        the expected holder in its WHERE: two coordinators can never both win.
        """
        try:
            with self._tx() as s:
                if s.get(ResourceGroupRow, name) is None:
                    s.add(ResourceGroupRow(name=name, holder_job_id=None, updated_at=utcnow()))
        except IntegrityError:
            pass  # created concurrently: fine, the CAS below decides
        holder = (
            ResourceGroupRow.holder_job_id == stale
            if stale is not None
            else or_(
                ResourceGroupRow.holder_job_id.is_(None), ResourceGroupRow.holder_job_id == job_id
            )
        )
        with self._tx() as s:
            res = s.execute(
                update(ResourceGroupRow)
                .where(ResourceGroupRow.name == name, holder)
                .values(holder_job_id=job_id, updated_at=utcnow())
            )
            return bool(res.rowcount)  # type: ignore[attr-defined]

    def release_resource_group(self, name: str, job_id: int) -> bool:
        """Free group ``name`` if ``job_id`` holds it; False when it did not."""
        with self._tx() as s:
            res = s.execute(
                update(ResourceGroupRow)
                .where(ResourceGroupRow.name == name, ResourceGroupRow.holder_job_id == job_id)
                .values(holder_job_id=None, updated_at=utcnow())
            )
            return bool(res.rowcount)  # type: ignore[attr-defined]

    def resource_group_holder(self, name: str) -> int | None:
        """The job holding group ``name``, if any."""
        with self._sessions() as s:
            row = s.get(ResourceGroupRow, name)
            return None if row is None else row.holder_job_id

    def builds_waiting_for_group(self, name: str) -> list[int]:
        """Builds with a ``created`` job in group ``name``, oldest waiting job first."""
        with self._sessions() as s:
            rows = s.execute(
                select(JobRow.build_id, func.min(JobRow.id).label("first"))
                .where(JobRow.resource_group == name, JobRow.status == JobStatus.CREATED)
                .group_by(JobRow.build_id)
                .order_by("first")
            ).all()
            return [int(r[0]) for r in rows]

    def held_resource_groups(self) -> list[tuple[str, int]]:
        """(group, holder job) of every taken group (recovery after a restart)."""
        with self._sessions() as s:
            q = select(ResourceGroupRow.name, ResourceGroupRow.holder_job_id).where(
                ResourceGroupRow.holder_job_id.is_not(None)
            )
            return [(str(r[0]), int(r[1] or 0)) for r in s.execute(q)]

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

    def find_artifacts(self, digest: str) -> list[ArtifactRecord]:
        """Artifacts stored under ``digest``."""
        with self._sessions() as s:
            rows = s.scalars(select(ArtifactRow).where(ArtifactRow.digest == digest))
            return [_artifact(r) for r in rows]

    # --- logs ------------------------------------------------------------------------

    def append_log(self, job_id: int, attempt: int, data: str, cap: int) -> bool:
        """Append output of ``attempt``; past ``cap`` bytes one truncation marker is stored.

        Returns False once the log is full (the worker may stop sending).
        """
        marker = f"\n[farm] log truncated: the job wrote more than {cap} bytes\n"
        with self._tx() as s:
            row = s.get(JobRow, job_id, with_for_update=True)
            if row is None or row.attempt != attempt:
                return False
            used = row.log_bytes
            if used >= cap:
                return False
            size = len(data.encode())
            if used + size > cap:
                room = max(cap - used, 0)
                data = data.encode()[:room].decode(errors="ignore") + marker
                size = cap
            s.add(LogChunkRow(job_id=job_id, attempt=attempt, data=data))
            row.log_bytes = min(used + size, cap)
            return row.log_bytes < cap

    def read_log(self, job_id: int, attempt: int, after: int = 0) -> tuple[str, int]:
        """Log text of ``attempt`` written after chunk id ``after``; returns (text, last id)."""
        with self._sessions() as s:
            rows = s.execute(
                select(LogChunkRow.id, LogChunkRow.data)
                .where(
                    LogChunkRow.job_id == job_id,
                    LogChunkRow.attempt == attempt,
                    LogChunkRow.id > after,
                )
                .order_by(LogChunkRow.id)
            ).all()
            if not rows:
                return "", after
            return "".join(r.data for r in rows), rows[-1].id

    def count_builds(self) -> int:
        """How many builds exist (metrics)."""
        with self._sessions() as s:
            return int(s.scalar(select(func.count(BuildRow.id))) or 0)

    def job_counts(self) -> dict[str, int]:
        """How many jobs are in each status (metrics)."""
        with self._sessions() as s:
            rows = s.execute(select(JobRow.status, func.count(JobRow.id)).group_by(JobRow.status))
            return {str(r[0]): int(r[1]) for r in rows}
