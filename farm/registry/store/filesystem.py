"""Content-addressed blob storage: bytes named by their sha256 digest.

Layout of a :class:`FilesystemBlobStore` under its root::

    blobs/sha256/ab/<hex>   committed blobs, written once by atomic rename
    tmp/<uuid>.tmp          uploads in flight (removed on success and on failure)
    uploads/<uuid>          resumable upload sessions (GC must never touch them)
    verified/ab/<hex>       proof of the last full re-hash (see ``verify``)
    checksums/ab/<hex>      the blob's at-rest XXH3-128, checked by whole reads (digests.py)

Writes hash into a unique temp file on the same filesystem, fsync, then rename:
readers see a whole blob or none; concurrent writers of the same bytes all win.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from farm.domain.gc import BlobEntry
from farm.errors import BlobNotFound, CorruptBlob, DigestMismatch, RegistryError
from farm.registry.store.base import checked_chunks
from farm.registry.store.digests import (
    CHUNK_SIZE,
    DIGEST_RE,
    BlobHasher,
    BlobInfo,
    ChecksumRecords,
    Sums,
    at_rest_hasher,
    digest_hex,
    feed_fd,
    hash_fd,
    held_until_checked,
    iter_file,
    storage_error,
    upload_error,
)
from farm.registry.store.sessions import UploadSessions

# A verification record is only trusted for a file whose ctime was at least
# this far in the past when it was hashed: a write landing in the same clock
# tick as the hash would otherwise leave ctime unchanged and go unnoticed.
_RACY_WINDOW_NS = 2_000_000_000


class FilesystemBlobStore(UploadSessions):
    """A :class:`BlobStore` in a local directory (see the module doc for layout)."""

    racy_window_ns = _RACY_WINDOW_NS  # class attribute so tests may lower it

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._blobs = self.root / "blobs" / "sha256"
        self._tmp = self.root / "tmp"
        self._uploads = self.root / "uploads"
        self._verified = self.root / "verified"
        for directory in (self._blobs, self._tmp, self._uploads, self._verified):
            directory.mkdir(parents=True, exist_ok=True)
        self.checksums = ChecksumRecords(self.root / "checksums")
        self._sweep_tmp()

    def _sweep_tmp(self, max_age: float = 6 * 3600) -> None:
        """Drop temp files that a killed process left behind (old: no upload is that slow)."""
        cutoff = time.time() - max_age
        for leftover in self._tmp.iterdir():
            with contextlib.suppress(OSError):
                if leftover.stat().st_mtime < cutoff:
                    leftover.unlink()

    def _blob_path(self, digest: str) -> Path:
        hexdigest = digest_hex(digest)
        return self._blobs / hexdigest[:2] / hexdigest

    def has(self, digest: str) -> bool:
        """Whether a blob with this digest is stored."""
        return self._blob_path(digest).is_file()

    def stat(self, digest: str) -> BlobInfo:
        """Size of a stored blob; BlobNotFound if absent."""
        try:
            return BlobInfo(digest, self._blob_path(digest).stat().st_size)
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest} not found") from None

    def put_stream(
        self,
        chunks: Iterable[bytes],
        expected_digest: str | None = None,
        max_size: int | None = None,
    ) -> BlobInfo:
        """Stream into a temp file while hashing, then commit it under its digest."""
        if expected_digest is not None:
            digest_hex(expected_digest)  # reject a malformed digest before reading a byte
        tmp = self._tmp / f"{uuid.uuid4().hex}.tmp"
        try:
            hasher = BlobHasher()
            with open(tmp, "xb") as f:
                for chunk in chunks:
                    if max_size is not None and hasher.size + len(chunk) > max_size:
                        raise upload_error(f"blob larger than the limit of {max_size} bytes", 413)
                    hasher.update(chunk)
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            return self._commit(tmp, hasher.sums(), expected_digest)
        finally:
            tmp.unlink(missing_ok=True)

    def put_file(self, path: Path, expected_digest: str | None = None) -> BlobInfo:
        """Store a local file's bytes."""
        with open(path, "rb") as f:
            return self.put_stream(iter_file(f), expected_digest)

    def put_received(self, receive: Callable[[int], Sums], expected_digest: str) -> BlobInfo:
        """Commit what ``receive(fd)`` writes into a fresh temp file under its digest.

        For the data plane, which splices a socket straight into the file: ``receive``
        hashes as it writes and returns the :class:`Sums`.  Nothing is stored unless
        that digest is ``expected_digest``; the temp file goes in every case.
        """
        digest_hex(expected_digest)
        tmp = self._tmp / f"{uuid.uuid4().hex}.tmp"
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                sums = receive(fd)
                try:
                    os.fsync(fd)
                except OSError as exc:
                    raise storage_error(exc) from None
            finally:
                os.close(fd)
            try:
                return self._commit(tmp, sums, expected_digest)
            except OSError as exc:
                raise storage_error(exc) from None
        finally:
            tmp.unlink(missing_ok=True)

    def _commit(self, tmp: Path, sums: Sums, expected: str | None) -> BlobInfo:
        digest = sums.digest
        if expected is not None and expected != digest:
            raise DigestMismatch(f"uploaded bytes have digest {digest}, not {expected}")
        dest = self._blob_path(digest)
        dest.parent.mkdir(exist_ok=True)
        if sums.at_rest is not None:  # before the blob appears: readers can use it at once
            self.checksums.write(digest_hex(digest), sums.at_rest)
        # Same digest, same bytes: keep the existing file when it is provably
        # intact; otherwise the atomic replace also heals a corrupted copy.
        if not (dest.is_file() and self._verified_recently(digest)):
            os.replace(tmp, dest)
            _fsync_dir(dest.parent)
        return BlobInfo(digest, sums.size)

    def open_read(self, digest: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """Chunks of a blob from ``offset``; whole-blob reads are hash-checked.

        A whole-blob read hashes as it goes (the at-rest checksum, see digests.py)
        and holds back the last chunk until it matched: a consumer of corrupted bytes
        gets CorruptBlob instead of the end of the blob.  Ranged reads are not checked.
        """
        size = self.stat(digest).size  # BlobNotFound now, not at first next()
        if offset < 0 or offset > size or (length is not None and length < 0):
            raise RegistryError(f"range {offset}+{length} outside blob {digest} of {size} bytes")
        whole = offset == 0 and (length is None or length >= size)
        if not whole and (length is None or offset + length >= size) and size:
            # A range that ends the blob completes it (a resumed download): the
            # whole blob must check out first, or resuming would deliver it corrupted.
            self.check(digest)
        return self._read(digest, offset, length, whole)

    def _read(self, digest: str, offset: int, length: int | None, whole: bool) -> Iterator[bytes]:
        try:
            f = open(self._blob_path(digest), "rb")  # noqa: SIM115 - closed by the with below
        except FileNotFoundError:  # deleted between stat and the first read
            raise BlobNotFound(f"blob {digest} not found") from None
        with f:
            f.seek(offset)
            if not whole:
                yield from iter_file(f, length)
                return
            chunks = iter_file(f, size=4 * CHUNK_SIZE)  # 1/4 of the hops per GiB
            at_rest = self.checksums.read(digest_hex(digest))
            if at_rest is None:
                yield from checked_chunks(
                    chunks, digest, f"blob {digest} is corrupted on disk: its bytes no longer match"
                )
                return
            # A mismatch is settled by a full sha256 of this open file (which also
            # rewrites a bad record).
            yield from held_until_checked(
                chunks, at_rest_hasher(), at_rest, lambda: self.settle(digest, f.fileno())
            )

    def verify(self, digest: str, *, cached: bool = False) -> BlobInfo:
        """Re-hash a blob fully; CorruptBlob if its bytes no longer match.

        Trade-off: re-hashing a multi-GB blob before every full GET is honest but
        slow, so a successful verify records the file's (inode, size, mtime, ctime)
        and ``cached=True`` skips the re-hash while that stat is unchanged.  Any
        write bumps ctime; silent media corruption does not, which is why
        whole-blob reads are checked again while streaming.  It also (re)writes the
        blob's at-rest checksum record.
        """
        if cached and self._verified_recently(digest):
            return self.stat(digest)
        try:
            with open(self._blob_path(digest), "rb") as f:
                before = os.fstat(f.fileno())
                self.settle(digest, f.fileno())
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest} not found") from None
        self._remember_verified(digest, before)
        return BlobInfo(digest, before.st_size)

    def _remember_verified(self, digest: str, before: os.stat_result) -> None:
        """Record that the file with this stat checked out whole (see ``verify``)."""
        if time.time_ns() - before.st_ctime_ns >= self.racy_window_ns:
            record = self._record_path(digest)
            record.parent.mkdir(exist_ok=True)
            tmp = self._tmp / f"{uuid.uuid4().hex}.verified"
            tmp.write_text(json.dumps(_stat_key(before)))
            os.replace(tmp, record)

    def check(self, digest: str, fd: int | None = None) -> None:
        """Whole-blob check by its at-rest checksum (sha256 where it has no record).

        ``fd`` is the open blob being served, else the stored file is opened.  A
        mismatch goes to :meth:`settle`.  CorruptBlob if the bytes are bad.  Like
        ``verify(cached=True)``, a file unchanged since its last whole check is not
        hashed again: clients that read a zip's tail by Range do that often.
        """
        if fd is None:
            try:
                with open(self._blob_path(digest), "rb") as f:
                    return self.check(digest, f.fileno())
            except FileNotFoundError:
                raise BlobNotFound(f"blob {digest} not found") from None
        before = os.fstat(fd)
        if self._verified_recently(digest, before):
            return
        expected = self.checksums.read(digest_hex(digest))
        if expected is None or hash_fd(fd, at_rest_hasher()) != expected:
            self.settle(digest, fd)
        self._remember_verified(digest, before)

    def settle(self, digest: str, fd: int) -> None:
        """Full sha256 of an open blob (``verify``, or an at-rest check that failed).

        CorruptBlob if the bytes are bad; otherwise a wrong or missing at-rest record
        (torn, rotted, absent) is written again, so it never gets blamed on the blob.
        """
        hasher = BlobHasher()
        feed_fd(fd, hasher.update)
        sums = hasher.sums()
        if sums.digest != digest:
            raise CorruptBlob(
                f"blob {digest} is corrupted on disk: its bytes hash to {sums.digest}"
            )
        hexdigest = digest_hex(digest)
        if sums.at_rest is not None and self.checksums.read(hexdigest) != sums.at_rest:
            self.checksums.write(hexdigest, sums.at_rest)

    def _record_path(self, digest: str) -> Path:
        return self._verified / self._blob_path(digest).relative_to(self._blobs)

    def _verified_recently(self, digest: str, st: os.stat_result | None = None) -> bool:
        """Whether the blob (stat ``st``, default its file's) is unchanged since checked."""
        try:
            record = json.loads(self._record_path(digest).read_text())
            return bool(record == _stat_key(st or self._blob_path(digest).stat()))
        except (OSError, ValueError):
            return False

    def path_for(self, digest: str) -> Path | None:
        """The blob's file, for callers on this host that can read it directly."""
        return self._blob_path(digest) if self.has(digest) else None

    def delete(self, digest: str) -> None:
        """Remove a blob and its records; absent is fine."""
        self._blob_path(digest).unlink(missing_ok=True)
        self._record_path(digest).unlink(missing_ok=True)
        self.checksums.drop(digest_hex(digest))

    def iter_digests(self) -> Iterator[str]:
        """Every committed digest (never temp files or upload sessions)."""
        for shard in sorted(self._blobs.iterdir()):
            if shard.is_dir():
                for blob in sorted(shard.iterdir()):
                    if DIGEST_RE.fullmatch(f"sha256:{blob.name}") and blob.is_file():
                        yield f"sha256:{blob.name}"

    def iter_entries(self) -> Iterator[BlobEntry]:
        """Every committed blob with its size and write time (GC's grace window)."""
        for digest in self.iter_digests():
            try:
                st = self._blob_path(digest).stat()
            except FileNotFoundError:
                continue  # deleted while listing
            yield BlobEntry(digest, st.st_size, st.st_mtime)


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _fsync_dir(directory: Path) -> None:
    # The rename is durable only once the directory entry itself is on disk.
    fd = os.open(directory, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
