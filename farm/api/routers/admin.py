"""``/api/v1/admin``: operator actions — garbage collection of unreferenced blobs.

``POST /api/v1/admin/gc?dry_run=true&grace=SECONDS`` marks every referenced digest
(:mod:`farm.domain.gc` says which), lists the store, and deletes unreferenced blobs
older than the grace window.  Before deleting it marks again, so a reference recorded
while the store was being listed still saves its blob.  One collection at a time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

from fastapi import APIRouter, Query, Request

from farm.api.deps import BlobsDep, SettingsDep
from farm.api.routers.registry import registry_db
from farm.db.releases import RegistryDb
from farm.domain.gc import BlobEntry, Report, mark, plan
from farm.errors import BlobNotFound, Conflict
from farm.registry.blobstore import BlobStore

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])
log = logging.getLogger("farm.gc")
_running = threading.Lock()


def blob_entries(blobs: BlobStore) -> Iterator[BlobEntry]:
    """Every committed blob with size and write time, from any store.

    Object stores list this in one call (``iter_entries``); a local store's files are
    stat'ed.  A blob deleted while listing is skipped.
    """
    entries = getattr(blobs, "iter_entries", None)
    if callable(entries):
        yield from entries()
        return
    for digest in blobs.iter_digests():
        path = blobs.path_for(digest)
        try:
            st = path.stat() if path else None
        except FileNotFoundError:
            continue
        if st is not None:
            yield BlobEntry(digest, st.st_size, st.st_mtime)
        else:  # a remote store without listing metadata: never old enough to guess
            yield BlobEntry(digest, blobs.stat(digest).size, datetime.now(UTC).timestamp())


def collect_garbage(db: RegistryDb, blobs: BlobStore, grace: float, dry_run: bool) -> Report:
    """One mark-and-sweep pass; returns what was (or would be) swept."""
    if not _running.acquire(blocking=False):
        raise Conflict("a garbage collection is already running")
    try:
        now = datetime.now(UTC)
        marked = mark(db.gc_references(), now)
        result = plan(blob_entries(blobs), marked, now.timestamp(), grace)
        report = Report(dry_run=dry_run, grace_seconds=grace)
        report.referenced = len(result.referenced)
        report.young = len(result.young)
        report.scanned = report.referenced + report.young + len(result.sweep)
        report.kept_bytes = sum(e.size for e in result.referenced + result.young)
        # Second mark: an artifact reported while we listed must not lose its blob.
        remarked = mark(db.gc_references(), datetime.now(UTC)) if not dry_run else marked
        for entry in result.sweep:
            if entry.digest in remarked:
                report.referenced += 1
                report.kept_bytes += entry.size
                continue
            if not dry_run:
                try:
                    blobs.delete(entry.digest)
                except BlobNotFound:
                    continue
            report.swept += 1
            report.swept_bytes += entry.size
            report.digests.append(entry.digest)
        log.info(
            "gc%s: %s scanned, %s swept (%s bytes)",
            " (dry run)" if dry_run else "",
            report.scanned,
            report.swept,
            report.swept_bytes,
        )
        return report
    finally:
        _running.release()


@router.post("/gc")
def gc(
    request: Request,
    blobs: BlobsDep,
    settings: SettingsDep,
    dry_run: bool = False,
    grace: float | None = Query(None, ge=0, description="seconds; default FARM_GC_GRACE_SECONDS"),
) -> dict[str, object]:
    """Delete unreferenced blobs older than the grace window (``dry_run``: only report)."""
    window = settings.gc_grace_seconds if grace is None else grace
    return collect_garbage(registry_db(request), blobs, window, dry_run).to_dict()
