"""Persistence of releases and the registry's metadata queries (returns records).

The release rules (immutable versions, only green builds, deletable only when
unreferenced) are decided in :mod:`farm.domain.releases`; this module stores what they
allow. It also answers the registry's questions that join artifacts with builds
(listing by project/ref/commit) and gathers every reference garbage collection must
respect (:mod:`farm.domain.gc`).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from farm.db.session import aware, transaction
from farm.db.tables import ArtifactRow, BuildRow, CacheRow, JobRow, ReleaseRow, RolloutRow
from farm.domain import releases as rules
from farm.domain.gc import ArtifactRef, BuildRef, References
from farm.domain.records import ArtifactListing, ReleaseRecord
from farm.errors import Conflict, NotFound


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
        rules.check_version(version)
        with self._sessions() as s:
            build = s.get(BuildRow, build_id)
            if build is None:
                raise NotFound(f"build {build_id} does not exist")
            rules.check_releasable(
                build.id, build.status, build.deliverable_digest, build.project, project
            )
            assert build.deliverable_digest is not None  # checked by the rules
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
            rules.repost_conflict(row.project, version, existing.build_id, build_id)
            return existing, False

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
        latest = self.list_releases(release.project, limit=1)
        with self._sessions() as s:
            rollouts = s.scalars(
                select(RolloutRow.id).where(RolloutRow.release_id == release.id).limit(10)
            ).all()
        is_latest = bool(latest) and latest[0].id == release.id
        return rules.deletion_blockers(release.project, is_latest, rollouts)

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
            extra = {str(d) for d in s.scalars(select(CacheRow.digest)) if d}
        return References(
            artifacts=artifacts,
            builds=builds,
            released_build_ids=frozenset(r.build_id for r in releases),
            release_digests=frozenset(r.deliverable_digest for r in releases),
            extra_digests=frozenset(extra),
        )
