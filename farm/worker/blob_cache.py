"""A worker's cache of verified blobs (source snapshots, upstream artifacts) by digest.

Every job of a build needs the build's source snapshot, and the jobs of a stage often
need the same upstream artifacts: without a cache each job downloads them again from
the API (issue 11: "inputs fetched per job"). Blobs are content-addressed and
``RegistryClient.download_to`` checks each one's sha256 while it downloads, so a file
kept under its digest is that blob for good. Jobs still get their own copy of every
input: the cache hands out the *archive*, which each job unpacks into its own fresh
workspace (a job's container never sees the cache, so it cannot change what the next
job receives).

The cache lives in ``FARM_WORK_DIR/blobs``; least recently used files go once it holds
more than ``FARM_WORKER_BLOB_CACHE_BYTES`` (0 turns it off). Several worker processes
may share the directory: files appear by atomic rename, and a file removed by one
process while another unpacks it stays readable to the open descriptor.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from farm.registry.store.digests import digest_hex

log = logging.getLogger("farm.worker")

BLOBS = "blobs"
_STRIPES = 64  # locks shared by digests: one download of a blob at a time per process
RESCAN_EVERY = 60.0  # seconds: how stale this process's count of the cache may get

Download = Callable[[str, Path], object]  # (digest, destination) -> anything


@dataclass(frozen=True)
class Blob:
    """A job's own name for a blob, and whether the cache had it already."""

    path: Path
    cached: bool


class BlobCache:
    """Blobs by digest under ``root``, at most ``max_bytes`` of them."""

    def __init__(self, root: Path, max_bytes: int, download: Download) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._download = download
        # Striped: one lock per digest would grow with every blob this worker ever saw.
        self._locks = tuple(threading.Lock() for _ in range(_STRIPES))
        # Bytes in the cache as last counted plus what this process added since, and
        # when it was counted: a hit within RESCAN_EVERY counts nothing (a count stats
        # every cached blob; once per job, it grew with the cache).
        self._estimate: int | None = None
        self._counted_at = 0.0
        self._count_lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        """False when the cache is turned off (``max_bytes`` of 0)."""
        return self.max_bytes > 0

    def _lock(self, digest: str) -> threading.Lock:
        return self._locks[hash(digest) % _STRIPES]

    @contextmanager
    def open(self, digest: str, scratch: Path) -> Iterator[Blob]:
        """``scratch``, a file holding blob ``digest`` while the block runs, removed after.

        A hard link to the cached file when the cache has it (else it is downloaded
        into the cache first): an eviction meanwhile removes only the cache's name. With
        the cache off, the blob is downloaded to ``scratch``.
        """
        try:
            if not self.enabled:
                self._download(digest, scratch)
                yield Blob(scratch, cached=False)
            else:
                yield Blob(scratch, cached=self._link(digest, scratch))
        finally:
            scratch.unlink(missing_ok=True)

    def _link(self, digest: str, scratch: Path) -> bool:
        path = self.root / digest_hex(digest)
        with self._lock(digest):  # one download per blob in this process
            hit = path.is_file()
            added = 0
            if hit:
                self.hits += 1
                with contextlib.suppress(OSError):
                    os.utime(path)  # recently used
            else:
                self.misses += 1
                self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
                tmp = self.root / f".part-{uuid.uuid4().hex}"
                try:
                    self._download(digest, tmp)
                    added = tmp.stat().st_size
                    os.replace(tmp, path)
                finally:
                    tmp.unlink(missing_ok=True)
            try:
                os.link(path, scratch)
            except OSError:  # another file system: a copy
                shutil.copyfile(path, scratch)
        if self._over(added):
            self._evict(keep=path)
        return hit

    def _over(self, added: int) -> bool:
        """Whether the cache may hold more than ``max_bytes`` now that this process added
        ``added`` bytes: counted again every RESCAN_EVERY seconds (other processes may
        share the directory), else estimated."""
        with self._count_lock:
            fresh = time.monotonic() - self._counted_at < RESCAN_EVERY
            if self._estimate is not None and fresh:
                self._estimate += added
                return self._estimate > self.max_bytes
            self._counted_at = time.monotonic()
            self._estimate = None  # _evict counts
            return True

    def _evict(self, keep: Path) -> None:
        """Remove least recently used blobs until the cache fits ``max_bytes``."""
        entries: list[tuple[float, int, Path]] = []
        total = 0
        try:
            with os.scandir(self.root) as it:
                for entry in it:
                    if entry.name.startswith("."):
                        continue
                    with contextlib.suppress(OSError):
                        st = entry.stat()
                        entries.append((st.st_mtime, st.st_size, Path(entry.path)))
                        total += st.st_size
        except OSError as exc:
            log.warning("blob cache %s unreadable: %s", self.root, exc)
            return
        if total > self.max_bytes:
            for _, size, path in sorted(entries, key=lambda e: e[0]):
                if total <= self.max_bytes:
                    break
                if path == keep and len(entries) > 1:
                    continue  # the blob just used goes last
                with contextlib.suppress(OSError):
                    path.unlink()
                    total -= size
        with self._count_lock:
            self._estimate, self._counted_at = total, time.monotonic()
