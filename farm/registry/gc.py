"""Garbage collection of blobs: one mark-and-sweep pass over any :class:`BlobStore`.

The rules (what a reference is, the grace window) are pure and live in
:mod:`farm.domain.gc`; this module runs the sequence against a store. It marks every
referenced digest, lists the store, and deletes unreferenced blobs older than the grace
window. Before deleting it marks again, so a reference recorded while the store was
being listed still saves its blob (collectors that race uploads lose blobs:
distribution#4939). One collection at a time per process.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Protocol

from farm.domain.gc import References, Report, mark, plan
from farm.errors import BlobNotFound, Conflict
from farm.registry.store import BlobStore

log = logging.getLogger("farm.gc")
_running = threading.Lock()


class ReferenceSource(Protocol):
    """Where the references that keep blobs alive come from (the database)."""

    def gc_references(self) -> References:
        """Every reference at this moment."""


def collect_garbage(refs: ReferenceSource, blobs: BlobStore, grace: float, dry_run: bool) -> Report:
    """One mark-and-sweep pass; returns what was (or would be) swept."""
    if not _running.acquire(blocking=False):
        raise Conflict("a garbage collection is already running")
    try:
        now = datetime.now(UTC)
        marked = mark(refs.gc_references(), now)
        result = plan(blobs.iter_entries(), marked, now.timestamp(), grace)
        report = Report(dry_run=dry_run, grace_seconds=grace)
        report.referenced = len(result.referenced)
        report.young = len(result.young)
        report.scanned = report.referenced + report.young + len(result.sweep)
        report.kept_bytes = sum(e.size for e in result.referenced + result.young)
        # Second mark: an artifact reported while we listed must not lose its blob.
        remarked = mark(refs.gc_references(), datetime.now(UTC)) if not dry_run else marked
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
