"""The store's cache index: per project, a cache key names the digest of its latest archive.

The archives themselves are ordinary content-addressed blobs; this index is the only
shared state caches need, so workers on different hosts share caches through the API.
Writes are last-writer-wins (as on GitLab, where the last job to upload a key wins).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from farm.db.tables import CacheRow


@dataclass(frozen=True)
class CacheEntry:
    """Where one cache key of a project currently points."""

    project: str
    key: str
    digest: str
    size: int
    updated_at: datetime


def _entry(row: CacheRow) -> CacheEntry:
    at = row.updated_at if row.updated_at.tzinfo else row.updated_at.replace(tzinfo=UTC)
    return CacheEntry(row.project, row.key, row.digest, row.size, at)


class CacheIndexMixin:
    """Cache methods of :class:`farm.db.repository.Store` (kept apart to keep files small)."""

    def _tx(self) -> AbstractContextManager[Session]:  # provided by Store
        raise NotImplementedError

    def get_cache(self, project: str, key: str) -> CacheEntry | None:
        """The entry of ``key`` in ``project``, or None when nothing was saved yet."""
        with self._tx() as s:
            row = s.scalars(
                select(CacheRow).where(CacheRow.project == project, CacheRow.key == key)
            ).first()
            return None if row is None else _entry(row)

    def put_cache(self, project: str, key: str, digest: str, size: int) -> CacheEntry:
        """Point ``key`` at ``digest`` (insert or overwrite; a racing insert becomes an update)."""
        now = datetime.now(UTC)
        for _ in range(2):
            try:
                with self._tx() as s:
                    res = s.execute(
                        update(CacheRow)
                        .where(CacheRow.project == project, CacheRow.key == key)
                        .values(digest=digest, size=size, updated_at=now)
                    )
                    if not res.rowcount:  # type: ignore[attr-defined]
                        s.add(
                            CacheRow(
                                project=project, key=key, digest=digest, size=size, updated_at=now
                            )
                        )
                break
            except IntegrityError:
                continue  # another worker inserted the key between our update and insert
        return CacheEntry(project, key, digest, size, now)

    def list_caches(self, project: str) -> Iterator[CacheEntry]:
        """Every cache key of a project (for operators)."""
        with self._tx() as s:
            rows = s.scalars(select(CacheRow).where(CacheRow.project == project)).all()
        return iter([_entry(r) for r in rows])
