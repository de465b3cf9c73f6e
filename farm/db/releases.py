"""Persistence of releases and the registry's metadata queries (returns records).

A release binds ``(project, version)`` to one green build and its deliverable, for good:

- **immutable**: a version is never re-pointed (409); re-posting the same build under
  the same version is an idempotent no-op, so a retried request does not fail;
- **only green builds**: a build still running is a 409 (retry later), a failed or
  canceled one a 422 (it never will be releasable);
- **deletable only when unreferenced**: a release is *referenced* while it is the
  latest release of its project (what "current" resolves to) or while a rollout
  points at it.  Rollouts do not exist yet; :data:`ROLLOUT_REFERENCE_TABLES` is where
  their table will be consulted.  A referenced release answers 409 on DELETE.

It also answers the registry's questions that join artifacts with builds (listing by
project/ref/commit) and gathers every reference garbage collection must respect.
"""

from __future__ import annotations

import re
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import MetaData, Table, delete, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from farm.db.session import aware, transaction
from farm.db.tables import ArtifactRow, BuildRow, JobRow, ReleaseRow
from farm.domain.gc import ArtifactRef, BuildRef, References
from farm.errors import Conflict, InvalidRequest, NotFound

VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
# Tables whose rows may hold a release (column ``release_id``); checked when present.
ROLLOUT_REFERENCE_TABLES = ("rollouts",)
_FINAL_RED = ("failed", "canceled", "skipped")


@dataclass(frozen=True)
class ReleaseRecord:
    """One release: a project's version pinned to a build and its deliverable."""

    id: int
    project: str
    version: str
    build_id: int
    ref: str
    commit: str
    deliverable_digest: str
    created_at: datetime


@dataclass(frozen=True)
class ArtifactListing:
    """An artifact row joined with its build (what ``GET /api/v1/artifacts`` lists)."""

    id: int
    build_id: int
    job_id: int | None
    name: str
    kind: str
    digest: str
    size: int
    created_at: datetime
    expires_at: datetime | None
    project: str
    ref: str
    commit: str
    build_status: str
    job_name: str | None = None


def _release(row: ReleaseRow) -> ReleaseRecord:
    return ReleaseRecord(
        id=row.id,
        project=row.project,
        version=row.version,
        build_id=row.build_id,
        ref=row.ref,
        commit=row.commit,
        deliverable_digest=row.deliverable_digest,
        created_at=aware(row.created_at),
    )


class RegistryDb:
    """Releases, artifact search and GC references over farm's database."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def _tx(self) -> AbstractContextManager[Session]:
        return transaction(self._sessions)

    # --- releases --------------------------------------------------------------------

    def create_release(
        self, build_id: int, version: str, project: str | None = None
    ) -> tuple[ReleaseRecord, bool]:
        """Release a green build as ``version``; returns (release, newly created)."""
        if not VERSION_RE.fullmatch(version):
            raise InvalidRequest(
                f"invalid version {version!r}: use letters, digits and . _ + - (max 128)"
            )
        with self._sessions() as s:
            build = s.get(BuildRow, build_id)
            if build is None:
                raise NotFound(f"build {build_id} does not exist")
            if project is not None and project != build.project:
                raise InvalidRequest(
                    f"build {build_id} belongs to project {build.project!r}, not {project!r}"
                )
            if build.status in _FINAL_RED:
                raise InvalidRequest(
                    f"build {build_id} is {build.status}: only a successful build can be released"
                )
            if build.status != "success" or not build.deliverable_digest:
                raise Conflict(
                    f"build {build_id} is {build.status}, not finished: "
                    "only a successful build can be released (wait for it)"
                )
            row = ReleaseRow(
                project=build.project,
                version=version,
                build_id=build.id,
                ref=build.ref,
                commit=build.commit,
                deliverable_digest=build.deliverable_digest,
                created_at=datetime.now(UTC),
            )
        try:
            with self._tx() as s:
                s.add(row)
                s.flush()
                return _release(row), True
        except IntegrityError:  # the version exists (maybe a concurrent request won)
            existing = self.get_release(row.project, version)
            if existing.build_id == build_id:
                return existing, False
            raise Conflict(
                f"release {row.project} {version} already exists (build {existing.build_id}); "
                "versions are immutable: choose a new version"
            ) from None

    def get_release(self, project: str, version: str) -> ReleaseRecord:
        """One release; NotFound if there is none."""
        with self._sessions() as s:
            row = s.scalar(
                select(ReleaseRow).where(
                    ReleaseRow.project == project, ReleaseRow.version == version
                )
            )
            if row is None:
                raise NotFound(f"no release {version} of project {project!r}")
            return _release(row)

    def list_releases(self, project: str | None = None, limit: int = 100) -> list[ReleaseRecord]:
        """Newest releases first."""
        with self._sessions() as s:
            q = select(ReleaseRow).order_by(ReleaseRow.id.desc()).limit(limit)
            if project:
                q = q.where(ReleaseRow.project == project)
            return [_release(r) for r in s.scalars(q)]

    def referenced_by(self, release: ReleaseRecord) -> list[str]:
        """Why a release cannot be deleted (empty: it can)."""
        reasons: list[str] = []
        latest = self.list_releases(release.project, limit=1)
        if latest and latest[0].id == release.id:
            reasons.append(f"it is the latest release of {release.project}")
        with self._sessions() as s:
            bind = s.get_bind()
            names = set(inspect(bind).get_table_names())
            for table_name in ROLLOUT_REFERENCE_TABLES:
                if table_name not in names:
                    continue
                table = Table(table_name, MetaData(), autoload_with=bind)
                if "release_id" in table.c:
                    used = s.execute(
                        select(table.c.release_id).where(table.c.release_id == release.id).limit(1)
                    ).first()
                    if used:
                        reasons.append(f"a rollout ({table_name}) references it")
        return reasons

    def delete_release(self, project: str, version: str) -> None:
        """Delete an unreferenced release; Conflict naming the reference otherwise."""
        release = self.get_release(project, version)
        reasons = self.referenced_by(release)
        if reasons:
            raise Conflict(f"release {project} {version} is still referenced: {'; '.join(reasons)}")
        with self._tx() as s:
            s.execute(delete(ReleaseRow).where(ReleaseRow.id == release.id))

    # --- artifacts -------------------------------------------------------------------

    def search_artifacts(
        self,
        *,
        project: str | None = None,
        ref: str | None = None,
        commit: str | None = None,
        build: int | None = None,
        name: str | None = None,
        kind: str | None = None,
        limit: int = 200,
    ) -> list[ArtifactListing]:
        """Artifacts joined with their builds, newest first; ``commit`` may be a prefix."""
        q = (
            select(ArtifactRow, BuildRow, JobRow.name)
            .join(BuildRow, ArtifactRow.build_id == BuildRow.id)
            .outerjoin(JobRow, ArtifactRow.job_id == JobRow.id)
            .order_by(ArtifactRow.id.desc())
            .limit(limit)
        )
        if project:
            q = q.where(BuildRow.project == project)
        if ref:
            q = q.where(BuildRow.ref == ref)
        if commit:
            q = q.where(BuildRow.commit.startswith(commit, autoescape=True))
        if build is not None:
            q = q.where(ArtifactRow.build_id == build)
        if name:
            q = q.where(ArtifactRow.name == name)
        if kind:
            q = q.where(ArtifactRow.kind == kind)
        with self._sessions() as s:
            return [
                ArtifactListing(
                    id=a.id,
                    build_id=a.build_id,
                    job_id=a.job_id,
                    name=a.name,
                    kind=a.kind,
                    digest=a.digest,
                    size=a.size,
                    created_at=aware(a.created_at),
                    expires_at=aware(a.expires_at),
                    project=b.project,
                    ref=b.ref,
                    commit=b.commit,
                    build_status=b.status,
                    job_name=job_name,
                )
                for a, b, job_name in s.execute(q).all()
            ]

    # --- garbage collection ----------------------------------------------------------

    def gc_references(self) -> References:
        """Every reference that keeps a blob alive (see farm.domain.gc)."""
        with self._sessions() as s:
            artifacts = tuple(
                ArtifactRef(r.build_id, r.digest, aware(r.expires_at))
                for r in s.execute(
                    select(ArtifactRow.build_id, ArtifactRow.digest, ArtifactRow.expires_at)
                )
            )
            builds = tuple(
                BuildRef(r.id, r.project, r.ref, r.status, r.snapshot_digest, r.deliverable_digest)
                for r in s.execute(
                    select(
                        BuildRow.id,
                        BuildRow.project,
                        BuildRow.ref,
                        BuildRow.status,
                        BuildRow.snapshot_digest,
                        BuildRow.deliverable_digest,
                    )
                )
            )
            releases = s.execute(select(ReleaseRow.build_id, ReleaseRow.deliverable_digest)).all()
            bind = s.get_bind()
            extra: set[str] = set()
            if "caches" in inspect(bind).get_table_names():
                # Reflected, not imported: the caches table belongs to another module.
                caches = Table("caches", MetaData(), autoload_with=bind)
                if "digest" in caches.c:
                    extra = {str(d) for d in s.scalars(select(caches.c.digest)) if d}
        return References(
            artifacts=artifacts,
            builds=builds,
            released_build_ids=frozenset(r.build_id for r in releases),
            release_digests=frozenset(r.deliverable_digest for r in releases),
            extra_digests=frozenset(extra),
        )
