"""Rows to records: the job and build columns the store reads, and how a row becomes a
``JobRecord``, ``ArtifactRecord`` or ``BuildRecord`` (shared by the store's modules)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any, TypeVar, cast

from sqlalchemy import Row, Select, Table, Text, bindparam, select, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session

from farm.db.secrets import SecretBox
from farm.db.session import aware
from farm.db.tables import ArtifactRow, BuildRow, JobRow
from farm.domain.records import (
    ArtifactRecord,
    BuildOrigin,
    BuildRecord,
    JobRecord,
    PipelineSource,
)
from farm.domain.specs import JobSpec
from farm.domain.statuses import BuildStatus, JobStatus

_T = TypeVar("_T")
IN_CHUNK = 500  # ids per ``IN (…)``: far below every database's parameter limit
JOBS = cast(Table, JobRow.__table__)
ARTIFACTS = cast(Table, ArtifactRow.__table__)
BUILDS = cast(Table, BuildRow.__table__)
# A build's own row, as plain columns: an ORM load of it cost twice as much, and a claim
# and a finish each read one.
BUILD_BY_ID = select(BUILDS).where(BUILDS.c.id == bindparam("build_id"))

# Who holds a job's current attempt: (attempt, claiming token id, job token hash).
Holder = tuple[int, int | None, str | None]


def job_columns() -> list[Any]:
    """Every job column, the spec as its JSON text (parsed by :func:`spec_of`, once)."""
    return [*(c for c in JOBS.c if c.name != "spec"), sql_cast(JOBS.c.spec, Text).label("spec")]


def select_jobs() -> Select[Any]:
    """A ``SELECT`` of :func:`job_columns` (rows for :func:`job_record`)."""
    return select(*job_columns())


# The statements every job's claim and finish run, built once with their parameters
# bound by name: building one per call, and SQLAlchemy's cache key of each new one, cost
# the API more than the database did (a built statement keeps its key).
JOB_BY_ID = select_jobs().where(JOBS.c.id == bindparam("job_id"))


@lru_cache(maxsize=256)
def update_job(
    columns: tuple[str, ...], statuses: tuple[str, ...] = (), returning: str = ""
) -> Any:
    """``UPDATE jobs SET <columns> WHERE id = :w_id`` (and, with ``statuses``, the status
    is one of them and the attempt is ``:w_attempt``), returning every job column
    (``returning="job"``), the log's size (``"log_bytes"``) or nothing. Each column's new
    value is the parameter ``v_<column>``."""
    c = JOBS.c
    where = [c.id == bindparam("w_id")]
    if statuses:
        where += [c.status.in_(statuses), c.attempt == bindparam("w_attempt")]
    q = update(JOBS).where(*where).values({name: bindparam(f"v_{name}") for name in columns})
    if returning == "job":
        return q.returning(*job_columns())
    if returning:
        return q.returning(c[returning])
    return q


def values_of(fields: Mapping[str, Any]) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The column names of ``fields`` (sorted: one cached statement per set) and their
    parameters for :func:`update_job`."""
    names = tuple(sorted(fields))
    return names, {f"v_{name}": fields[name] for name in names}


@lru_cache(maxsize=50_000)
def _spec_of_text(text: str) -> JobSpec:
    # Shared by every record of the same stored spec: JobSpec is frozen, and nothing
    # changes its dicts in place (callers copy them: assignment, spawn).
    return JobSpec.from_dict(json.loads(text))


def spec_of(value: str | dict[str, Any]) -> JobSpec:
    """A job's spec from its stored form (parsed JSON text is cached)."""
    # Text from select_jobs; a driver may still hand back the parsed JSON.
    return _spec_of_text(value) if isinstance(value, str) else JobSpec.from_dict(value)


def chunks(values: Sequence[_T]) -> Iterable[Sequence[_T]]:
    """``values`` in slices of :data:`IN_CHUNK`, for ``IN (…)`` lists."""
    for i in range(0, len(values), IN_CHUNK):
        yield values[i : i + IN_CHUNK]


def artifact_record(row: Any) -> ArtifactRecord:
    """An artifact row as its record."""
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


def environment_of(spec: JobSpec) -> dict[str, Any] | None:
    """The ``jobs.environment`` column of a spec: its ``environment:`` (name, url,
    action) as JSON, or None."""
    env = spec.environment
    return None if env is None else {"name": env.name, "url": env.url, "action": env.action}


def job_record(row: Any, artifacts: Iterable[Any] = ()) -> JobRecord:
    """A record of a row of :func:`select_jobs` (by mapping: 10x faster than attributes)."""
    r = row._mapping
    return JobRecord(
        id=r["id"],
        build_id=r["build_id"],
        name=r["name"],
        stage=r["stage"],
        position=r["position"],
        spec=spec_of(r["spec"]),
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
        artifacts=tuple(artifact_record(a) for a in artifacts),
        stuck_reason=r["stuck_reason"],
        test_report=r["test_report"],
        queued_at=aware(r["queued_at"]),
        timeline=r["timeline"],
        cached_from=r["cached_from"],
    )


def build_record(
    box: SecretBox, row: BuildRow | Row[Any], jobs: tuple[JobRecord, ...] = ()
) -> BuildRecord:
    """A build row (ORM or ``BUILD_BY_ID``'s) as its record (secrets decrypted with
    ``box``), with ``jobs``."""
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


def _origin(row: BuildRow | Row[Any]) -> BuildOrigin | None:
    if not (row.origin_host and row.origin_api_url and row.origin_project):
        return None
    return BuildOrigin(row.origin_host, row.origin_api_url, row.origin_project)


def job_artifacts(s: Session, build_id: int) -> dict[int, list[Any]]:
    """A build's job artifact rows by job id, oldest first (the build's own aside)."""
    arts: dict[int, list[Any]] = {}
    q = select(ARTIFACTS).where(ARTIFACTS.c.build_id == build_id).order_by(ARTIFACTS.c.id)
    for a in s.execute(q):
        if a.job_id is not None:
            arts.setdefault(a.job_id, []).append(a)
    return arts
