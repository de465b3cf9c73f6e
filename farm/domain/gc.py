"""Garbage collection of blobs: the pure mark-and-plan logic (no I/O here).

A blob is *referenced* — and kept — when any of these point at it:

- an artifact row that has not expired (``expires_at`` unset or in the future);
- any build's source snapshot or deliverable manifest;
- a release's deliverable, and *every* blob of a released build, expired or not;
- every blob of the latest green build of each (project, ref), expired or not;
- any extra digest the caller supplies (e.g. the ``caches`` table).

An unreferenced blob is swept only when it is older than the grace window: an upload
that just landed may not be recorded yet (a worker uploads, *then* reports the
artifact), and collectors that race uploads lose blobs (distribution#4939).  The
caller marks twice — before listing the store and again just before deleting — so a
reference recorded meanwhile still saves its blob.  Upload sessions and temp files
are never listed, hence never swept.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from farm.domain.statuses import BuildStatus

DEFAULT_GRACE_SECONDS = 3600


@dataclass(frozen=True)
class BlobEntry:
    """A stored blob as GC sees it: digest, size, and when it was written (epoch s)."""

    digest: str
    size: int
    mtime: float


@dataclass(frozen=True)
class ArtifactRef:
    """An artifact row: which build it belongs to and until when it is kept."""

    build_id: int
    digest: str
    expires_at: datetime | None = None


@dataclass(frozen=True)
class BuildRef:
    """The digests a build row holds, and what the latest-green rule needs."""

    id: int
    project: str
    ref: str
    status: str
    snapshot_digest: str | None = None
    deliverable_digest: str | None = None


@dataclass(frozen=True)
class References:
    """Everything in the database that can keep a blob alive."""

    artifacts: tuple[ArtifactRef, ...] = ()
    builds: tuple[BuildRef, ...] = ()
    released_build_ids: frozenset[int] = frozenset()
    release_digests: frozenset[str] = frozenset()
    extra_digests: frozenset[str] = frozenset()


def latest_green(builds: Iterable[BuildRef]) -> set[int]:
    """Id of the newest successful build of each (project, ref)."""
    best: dict[tuple[str, str], int] = {}
    for b in builds:
        if b.status == BuildStatus.SUCCESS:
            key = (b.project, b.ref)
            best[key] = max(best.get(key, b.id), b.id)
    return set(best.values())


def protected_builds(refs: References) -> set[int]:
    """Builds whose every blob is kept even after their artifacts expire."""
    return set(refs.released_build_ids) | latest_green(refs.builds)


def mark(refs: References, now: datetime) -> set[str]:
    """Every digest that must survive a collection at ``now``."""
    protected = protected_builds(refs)
    marked: set[str] = set(refs.release_digests) | set(refs.extra_digests)
    for b in refs.builds:
        marked.update(d for d in (b.snapshot_digest, b.deliverable_digest) if d)
    for a in refs.artifacts:
        if a.build_id in protected or a.expires_at is None or a.expires_at > now:
            marked.add(a.digest)
    return marked


@dataclass
class Plan:
    """What a collection would do with each listed blob."""

    referenced: list[BlobEntry] = field(default_factory=list)
    young: list[BlobEntry] = field(default_factory=list)  # unreferenced, inside grace
    sweep: list[BlobEntry] = field(default_factory=list)


def plan(entries: Iterable[BlobEntry], marked: set[str], now_ts: float, grace: float) -> Plan:
    """Split listed blobs into kept-by-reference, kept-by-grace and to-sweep."""
    result = Plan()
    for entry in entries:
        if entry.digest in marked:
            result.referenced.append(entry)
        elif now_ts - entry.mtime < grace:
            result.young.append(entry)
        else:
            result.sweep.append(entry)
    return result


@dataclass
class Report:
    """The outcome of one collection, as the API and CLI show it."""

    dry_run: bool
    grace_seconds: float
    scanned: int = 0
    referenced: int = 0
    young: int = 0
    swept: int = 0
    swept_bytes: int = 0
    kept_bytes: int = 0
    digests: list[str] = field(default_factory=list)  # swept (or, dry run, would be)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "dry_run": self.dry_run,
            "grace_seconds": self.grace_seconds,
            "scanned": self.scanned,
            "referenced": self.referenced,
            "young": self.young,
            "swept": self.swept,
            "swept_bytes": self.swept_bytes,
            "kept_bytes": self.kept_bytes,
            "digests": self.digests,
        }
