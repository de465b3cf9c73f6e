"""The store's reads for people and dashboards: build documents, build lists, metrics.

The build document's read selects only the columns it shows: a 10,000-job build's
document is two queries and parses no job spec.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from farm.db.rows import (
    BUILD_BY_ID,
    BUILDS,
    JOBS,
    artifact_record,
    build_record,
    chunks,
    job_artifacts,
)
from farm.db.secrets import SecretBox
from farm.db.session import aware
from farm.db.tables import BuildRow, JobRow
from farm.domain.records import ArtifactRecord, BuildRecord, JobTiming
from farm.domain.statuses import JobStatus
from farm.errors import NotFound


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


class ReadsMixin:
    """Read methods of :class:`farm.db.repository.Store`."""

    _sessions: sessionmaker[Session]  # provided by Store
    _box: SecretBox

    def job_lines(self, build_id: int) -> tuple[BuildRecord, list[JobLine]]:
        """The build (without jobs) and its jobs as the build document shows them.

        One query for the jobs — the few spec fields shown are extracted by the database
        (JSON paths), so no spec is parsed — and one for the artifacts.
        """
        spec = JobRow.spec
        with self._sessions() as s:
            row = s.execute(BUILD_BY_ID, {"build_id": build_id}).first()
            if row is None:
                raise NotFound(f"build {build_id} does not exist")
            c = JOBS.c
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
            arts = job_artifacts(s, build_id)
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
                    artifacts=tuple(artifact_record(a) for a in arts.get(r.id, ())),
                    stuck_reason=r.stuck_reason,
                    test_report=r.test_report,
                    environment=r.environment,
                    timeline=r.timeline,
                    cached=r.cached_from is not None,
                )
                for r in rows
            ]
            return build_record(self._box, row), lines

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
            return [build_record(self._box, r) for r in s.scalars(q)]

    def last_durations(self, project: str, names: Iterable[str]) -> dict[str, float]:
        """Seconds from claim to finish of the latest successful, executed (not reused)
        job of each name in ``project`` (issue 11: critical-path-first dispatch)."""
        wanted = sorted(set(names))
        if not wanted:
            return {}
        c, b = JOBS.c, BUILDS.c
        out: dict[str, float] = {}
        with self._sessions() as s:
            for part in chunks(wanted):
                latest = (
                    select(func.max(c.id))
                    .join_from(JOBS, BUILDS, b.id == c.build_id)
                    .where(
                        b.project == project,
                        c.name.in_(list(part)),
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

    def count_builds(self) -> int:
        """How many builds exist (metrics)."""
        with self._sessions() as s:
            return int(s.scalar(select(func.count(BuildRow.id))) or 0)

    def job_timings(self, build_id: int) -> list[JobTiming]:
        """The started jobs of a build, their times only: what the metrics observe when
        it finishes, without reading (and parsing) every job of a 10,000-job build."""
        c = JOBS.c
        q = select(c.queue, c.status, c.queued_at, c.started_at, c.finished_at).where(
            c.build_id == build_id, c.started_at.is_not(None)
        )
        with self._sessions() as s:
            return [
                JobTiming(
                    r.queue,
                    JobStatus(r.status),
                    aware(r.queued_at),
                    aware(r.started_at),
                    aware(r.finished_at),
                )
                for r in s.execute(q)
            ]

    def job_counts(self) -> dict[str, int]:
        """How many jobs are in each status (metrics)."""
        with self._sessions() as s:
            rows = s.execute(select(JobRow.status, func.count(JobRow.id)).group_by(JobRow.status))
            return {str(r[0]): int(r[1]) for r in rows}
