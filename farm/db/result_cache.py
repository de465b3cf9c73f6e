"""The job result cache's tables side (farm/coordinator/result_cache.py decides)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from farm.db import job_revs
from farm.db.rows import artifact_record, job_record, select_jobs
from farm.db.session import transaction
from farm.db.tables import ArtifactRow, JobRow, LogChunkRow, ResultCacheRow
from farm.domain.clock import utcnow
from farm.domain.logs import fit_chunk
from farm.domain.records import ArtifactRecord, BuildRecord, JobRecord
from farm.domain.secrets import applicable
from farm.domain.statuses import JobStatus

if TYPE_CHECKING:
    from farm.db.repository import Store

_LOG_CAP = 64 * 1024 * 1024  # a copied log was already capped when it was written


class ResultCacheDb:
    """:class:`farm.coordinator.result_cache.ResultStore` over the farm's database."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._sessions = store._sessions

    def has_secrets(self, build: BuildRecord) -> bool:
        if build.secrets:
            return True
        project = self.store.project_secrets(build.project)
        return bool(applicable(project, build.ref, repo=build.repo))

    def job_artifacts(self, build_id: int) -> Mapping[int, Sequence[ArtifactRecord]]:
        out: dict[int, list[ArtifactRecord]] = {}
        with self._sessions() as s:
            rows = s.scalars(select(ArtifactRow).where(ArtifactRow.build_id == build_id)).all()
            for row in rows:
                if row.job_id is not None:
                    out.setdefault(row.job_id, []).append(artifact_record(row))
        return out

    def lookup(self, key: str) -> JobRecord | None:
        c = JobRow.__table__.c
        with self._sessions() as s:
            job_id = s.scalar(select(ResultCacheRow.job_id).where(ResultCacheRow.key == key))
            if job_id is None:
                return None
            row = s.execute(
                select_jobs().where(c.id == job_id, c.status == JobStatus.SUCCESS)
            ).first()
            if row is None:
                return None
            arts = s.scalars(select(ArtifactRow).where(ArtifactRow.job_id == job_id)).all()
            return job_record(row, arts)

    def remember(self, key: str, job_id: int) -> None:
        with transaction(self._sessions) as s:
            row = s.get(ResultCacheRow, key)
            if row is None:
                s.add(ResultCacheRow(key=key, job_id=job_id, created_at=utcnow()))
            else:
                row.job_id, row.created_at = job_id, utcnow()

    def reuse(
        self, job_id: int, attempt: int, source: JobRecord, timeline: dict[str, float]
    ) -> bool:
        now = utcnow()
        with transaction(self._sessions) as s:
            stamped = job_revs.stamp(s, job_id)
            if stamped is None:
                return False
            build_id, rev = stamped
            done = s.execute(
                update(JobRow)
                .where(
                    JobRow.id == job_id,
                    JobRow.status == JobStatus.PENDING,
                    JobRow.attempt == attempt,
                )
                .values(
                    status=JobStatus.SUCCESS,
                    exit_code=source.exit_code,
                    reason=None,
                    coverage=source.coverage,
                    started_at=now,
                    finished_at=now,
                    cached_from=source.id,
                    timeline=timeline,
                    worker=None,
                    rev=rev,
                )
            )
            if not done.rowcount:  # type: ignore[attr-defined]
                return False
            for art in source.artifacts:
                s.add(
                    ArtifactRow(
                        build_id=build_id,
                        job_id=job_id,
                        name=art.name,
                        kind=art.kind,
                        digest=art.digest,
                        size=art.size,
                        created_at=now,
                        expires_at=art.expires_at,
                        files=list(art.files) or None,
                    )
                )
            header = (
                f"\x1b[0;36mfarm: inputs identical to job {source.id} (build "
                f"{source.build_id}): its result, log and artifacts are reused, nothing ran"
                "\x1b[0m\n"
            )
            chunks = s.scalars(
                select(LogChunkRow.data)
                .where(LogChunkRow.job_id == source.id, LogChunkRow.attempt == source.attempt)
                .order_by(LogChunkRow.id)
            ).all()
            size = 0
            for text in (header, *chunks):
                fitted = fit_chunk(size, text, _LOG_CAP, None)
                if fitted is None:
                    continue
                data, size = fitted
                s.add(LogChunkRow(job_id=job_id, attempt=attempt, data=data))
            s.execute(update(JobRow).where(JobRow.id == job_id).values(log_bytes=size))
            return True
