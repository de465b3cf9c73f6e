"""``/api/v1/worker/caches``: the cache index workers share (project + key → blob digest).

Cache archives are ordinary blobs uploaded by digest (``/api/v1/blobs``); this router
only keeps which digest a key points to, so workers on different hosts share caches
with no shared filesystem. A key is written only once its blob is stored and verified.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from farm.api.auth import requires
from farm.api.deps import BlobsDep, StoreDep
from farm.api.errors import errors
from farm.api.limits import Line
from farm.db.caches import CacheEntry
from farm.domain.auth import Scope
from farm.errors import NotFound, UploadError

router = APIRouter(
    prefix="/api/v1/worker/caches", tags=["worker"], dependencies=[requires(Scope.WORKER)]
)

DIGEST = r"^sha256:[0-9a-f]{64}$"


class CachePut(BaseModel):
    """A worker points a key at an uploaded archive."""

    digest: str = Field(pattern=DIGEST)
    size: int = Field(ge=0, le=2**63 - 1)


class CacheOut(BaseModel):
    """Where a cache key points."""

    project: str
    key: str
    digest: str
    size: int
    updated_at: datetime

    @classmethod
    def of(cls, e: CacheEntry) -> CacheOut:
        """From a store entry."""
        return cls(
            project=e.project, key=e.key, digest=e.digest, size=e.size, updated_at=e.updated_at
        )


# ``project`` may contain slashes (group/name); a key never does (the loader refuses it),
# so the last path segment is the key.
@router.get("/{project:path}/{key}", responses=errors(404, s404="Nothing saved under this key"))
def get_cache(project: Line, key: Line, store: StoreDep) -> CacheOut:
    """The archive of ``key``; 404 when nothing was saved under it yet."""
    entry = store.get_cache(project, key)
    if entry is None:
        raise NotFound(f"no cache {key!r} for project {project!r}")
    return CacheOut.of(entry)


@router.put(
    "/{project:path}/{key}",
    responses=errors(400, s400="The archive was not uploaded (PUT it under its digest first)"),
)
def put_cache(
    project: Line, key: Line, body: CachePut, store: StoreDep, blobs: BlobsDep
) -> CacheOut:
    """Point ``key`` at an uploaded blob (last writer wins, as on GitLab)."""
    if not blobs.has(body.digest):
        raise UploadError(f"cache archive {body.digest} was not uploaded")
    return CacheOut.of(store.put_cache(project, key, body.digest, body.size))
