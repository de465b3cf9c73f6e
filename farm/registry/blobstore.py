"""Content-addressed blob storage: bytes named by their sha256 digest.

Layout of a :class:`FilesystemBlobStore` under its root::

    blobs/sha256/ab/<hex>   committed blobs, written once by atomic rename
    tmp/<uuid>.tmp          uploads in flight (removed on success and on failure)
    uploads/<uuid>          resumable upload sessions (GC must never touch them)
    verified/ab/<hex>       proof of the last full re-hash (see ``verify``)

Writes hash into a unique temp file on the same filesystem, fsync, then rename:
readers see a whole blob or none; concurrent writers of the same bytes all win.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from farm.errors import BlobNotFound, CorruptBlob, DigestMismatch, RegistryError, UploadError

CHUNK_SIZE = 1024 * 1024
_DIGEST_RE = re.compile(r"sha256:([0-9a-f]{64})")
# A verification record is only trusted for a file whose ctime was at least
# this far in the past when it was hashed: a write landing in the same clock
# tick as the hash would otherwise leave ctime unchanged and go unnoticed.
_RACY_WINDOW_NS = 2_000_000_000


@dataclass(frozen=True)
class BlobInfo:
    """A stored blob: its digest (``sha256:<hex>``) and size in bytes."""

    digest: str
    size: int


def digest_hex(digest: str) -> str:
    """The hex part of a ``sha256:<64 hex>`` digest; UploadError if malformed."""
    match = _DIGEST_RE.fullmatch(digest) if isinstance(digest, str) else None
    if match is None:
        raise UploadError(f"invalid digest {digest!r}: expected 'sha256:' and 64 lowercase hex")
    return match.group(1)


def upload_error(message: str, status: int) -> UploadError:
    """An UploadError carrying a more precise HTTP status (413, 416, 404)."""
    error = UploadError(message)
    error.http_status = status  # the tree has one UploadError; HTTP wants finer codes
    return error


def hash_file(path: Path) -> BlobInfo:
    """Digest and size of a local file, read in chunks (memory flat)."""
    hasher = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            hasher.update(chunk)
            size += len(chunk)
    return BlobInfo(f"sha256:{hasher.hexdigest()}", size)


def iter_file(f: BinaryIO, length: int | None = None, size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Chunks of an open file from its position, up to ``length`` bytes."""
    remaining = length
    while remaining is None or remaining > 0:
        chunk = f.read(size if remaining is None else min(size, remaining))
        if not chunk:
            return
        if remaining is not None:
            remaining -= len(chunk)
        yield chunk


def checked_chunks(chunks: Iterable[bytes], digest: str, corrupt: str) -> Iterator[bytes]:
    """Pass ``chunks`` on, holding the last one back until their sha256 is ``digest``.

    A consumer of corrupted bytes gets CorruptBlob(``corrupt``) instead of the end of
    the blob, so a corrupted blob is never delivered whole.
    """
    hasher = hashlib.sha256()
    held: bytes | None = None
    for chunk in chunks:
        hasher.update(chunk)
        if held is not None:
            yield held
        held = chunk
    if f"sha256:{hasher.hexdigest()}" != digest:
        raise CorruptBlob(corrupt)
    if held is not None:
        yield held


class BlobStore(Protocol):
    """What the API and GC need of blob storage; narrow enough for an object store."""

    def has(self, digest: str) -> bool:
        """Whether a blob with this digest is stored."""

    def stat(self, digest: str) -> BlobInfo:
        """Size of a stored blob; BlobNotFound if absent."""

    def put_stream(
        self,
        chunks: Iterable[bytes],
        expected_digest: str | None = None,
        max_size: int | None = None,
    ) -> BlobInfo:
        """Store a stream; DigestMismatch or UploadError (too large) store nothing."""

    def put_file(self, path: Path, expected_digest: str | None = None) -> BlobInfo:
        """Store a local file's bytes."""

    def open_read(self, digest: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """Chunks of a blob; a whole-blob read raises CorruptBlob before its last chunk."""

    def verify(self, digest: str, *, cached: bool = False) -> BlobInfo:
        """Re-hash a blob (CorruptBlob on mismatch); ``cached`` may trust a fresh record."""

    def path_for(self, digest: str) -> Path | None:
        """A local path to read the blob directly, or None for remote stores."""

    def delete(self, digest: str) -> None:
        """Remove a blob; absent is fine (GC races are harmless)."""

    def iter_digests(self) -> Iterator[str]:
        """Every stored digest, for garbage collection."""

    def start_upload(self) -> str:
        """Open a resumable upload session; returns its uuid."""

    def upload_chunk(
        self, upload_id: str, offset: int, chunks: Iterable[bytes], max_size: int | None = None
    ) -> int:
        """Append at ``offset`` (must equal the current size); returns the new offset."""

    def upload_status(self, upload_id: str) -> int:
        """Bytes received so far by a session."""

    def finish_upload(
        self, upload_id: str, expected_digest: str, max_size: int | None = None
    ) -> BlobInfo:
        """Verify and commit a session's bytes as a blob; the session ends."""

    def abort_upload(self, upload_id: str) -> None:
        """Drop a session and its bytes."""


class FilesystemBlobStore:
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
            hasher = hashlib.sha256()
            size = 0
            with open(tmp, "xb") as f:
                for chunk in chunks:
                    size += len(chunk)
                    if max_size is not None and size > max_size:
                        raise upload_error(f"blob larger than the limit of {max_size} bytes", 413)
                    hasher.update(chunk)
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            return self._commit(tmp, f"sha256:{hasher.hexdigest()}", size, expected_digest)
        finally:
            tmp.unlink(missing_ok=True)

    def put_file(self, path: Path, expected_digest: str | None = None) -> BlobInfo:
        """Store a local file's bytes."""
        with open(path, "rb") as f:
            return self.put_stream(iter_file(f), expected_digest)

    def _commit(self, tmp: Path, digest: str, size: int, expected: str | None) -> BlobInfo:
        if expected is not None and expected != digest:
            raise DigestMismatch(f"uploaded bytes have digest {digest}, not {expected}")
        dest = self._blob_path(digest)
        dest.parent.mkdir(exist_ok=True)
        # Same digest, same bytes: keep the existing file when it is provably
        # intact; otherwise the atomic replace also heals a corrupted copy.
        if not (dest.is_file() and self._verified_recently(digest, dest)):
            os.replace(tmp, dest)
            _fsync_dir(dest.parent)
        return BlobInfo(digest, size)

    def open_read(self, digest: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """Chunks of a blob from ``offset``; whole-blob reads are hash-checked.

        A whole-blob read hashes as it goes and holds back the last chunk until the
        digest matched: a consumer of corrupted bytes gets CorruptBlob instead of
        the end of the blob.  Ranged reads cannot be checked cheaply and are not.
        """
        size = self.stat(digest).size  # BlobNotFound now, not at first next()
        if offset < 0 or offset > size or (length is not None and length < 0):
            raise RegistryError(f"range {offset}+{length} outside blob {digest} of {size} bytes")
        whole = offset == 0 and (length is None or length >= size)
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
            yield from checked_chunks(
                iter_file(f, size=4 * CHUNK_SIZE),  # 1/4 of the hops per GiB
                digest,
                f"blob {digest} is corrupted on disk: its bytes no longer match",
            )

    def verify(self, digest: str, *, cached: bool = False) -> BlobInfo:
        """Re-hash a blob fully; CorruptBlob if its bytes no longer match.

        Trade-off: re-hashing a multi-GB blob before every full GET is honest but
        slow, so a successful verify records the file's (inode, size, mtime, ctime)
        and ``cached=True`` skips the re-hash while that stat is unchanged.  Any
        write bumps ctime; silent media corruption does not, which is why
        whole-blob reads are hash-checked again while streaming.
        """
        path = self._blob_path(digest)
        if cached and self._verified_recently(digest, path):
            return self.stat(digest)
        try:
            before = path.stat()
            info = hash_file(path)
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest} not found") from None
        if info.digest != digest:
            raise CorruptBlob(f"blob {digest} is corrupted on disk: bytes hash to {info.digest}")
        if time.time_ns() - before.st_ctime_ns >= self.racy_window_ns:
            record = self._record_path(digest)
            record.parent.mkdir(exist_ok=True)
            tmp = self._tmp / f"{uuid.uuid4().hex}.verified"
            tmp.write_text(json.dumps(_stat_key(before)))
            os.replace(tmp, record)
        return BlobInfo(digest, info.size)

    def _record_path(self, digest: str) -> Path:
        return self._verified / self._blob_path(digest).relative_to(self._blobs)

    def _verified_recently(self, digest: str, path: Path) -> bool:
        try:
            record = json.loads(self._record_path(digest).read_text())
            return bool(record == _stat_key(path.stat()))
        except (OSError, ValueError):
            return False

    def path_for(self, digest: str) -> Path | None:
        """The blob's file, for callers on this host that can read it directly."""
        return self._blob_path(digest) if self.has(digest) else None

    def delete(self, digest: str) -> None:
        """Remove a blob and its verification record; absent is fine."""
        self._blob_path(digest).unlink(missing_ok=True)
        self._record_path(digest).unlink(missing_ok=True)

    def iter_digests(self) -> Iterator[str]:
        """Every committed digest (never temp files or upload sessions)."""
        for shard in sorted(self._blobs.iterdir()):
            if shard.is_dir():
                for blob in sorted(shard.iterdir()):
                    if _DIGEST_RE.fullmatch(f"sha256:{blob.name}") and blob.is_file():
                        yield f"sha256:{blob.name}"

    def _session_path(self, upload_id: str) -> Path:
        try:
            canonical = str(uuid.UUID(upload_id))
        except (ValueError, TypeError, AttributeError):
            canonical = ""
        if canonical != upload_id:  # also keeps the id from naming another path
            raise upload_error(f"unknown upload session {upload_id!r}", 404)
        return self._uploads / upload_id

    def _open_session(self, upload_id: str) -> BinaryIO:
        path = self._session_path(upload_id)
        try:
            f = open(path, "r+b")  # noqa: SIM115 - the caller closes it
        except FileNotFoundError:
            raise upload_error(f"unknown upload session {upload_id}", 404) from None
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # one writer per session
        # A finish or abort may have won the lock and moved the file away.
        try:
            same = os.stat(path).st_ino == os.fstat(f.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            f.close()
            raise upload_error(f"unknown upload session {upload_id}", 404)
        return f

    def start_upload(self) -> str:
        """Open a resumable upload session; returns its uuid."""
        upload_id = str(uuid.uuid4())
        self._session_path(upload_id).touch(exist_ok=False)
        return upload_id

    def upload_chunk(
        self, upload_id: str, offset: int, chunks: Iterable[bytes], max_size: int | None = None
    ) -> int:
        """Append at ``offset``; bytes received before a dropped connection are kept."""
        with self._open_session(upload_id) as f:
            size = os.fstat(f.fileno()).st_size
            if offset != size:
                raise upload_error(f"expected offset {size}, got {offset}", 416)
            f.seek(size)
            try:
                for chunk in chunks:
                    size += len(chunk)
                    if max_size is not None and size > max_size:
                        f.truncate(size - len(chunk))
                        raise upload_error(f"upload larger than the limit of {max_size} bytes", 413)
                    f.write(chunk)
            finally:
                # Keep what arrived so the client can resume from upload_status,
                # and refresh the mtime a session GC looks at.
                f.flush()
                os.utime(f.fileno())
            return size

    def upload_status(self, upload_id: str) -> int:
        """Bytes received so far by a session."""
        try:
            return self._session_path(upload_id).stat().st_size
        except FileNotFoundError:
            raise upload_error(f"unknown upload session {upload_id}", 404) from None

    def finish_upload(
        self, upload_id: str, expected_digest: str, max_size: int | None = None
    ) -> BlobInfo:
        """Hash the session's bytes and commit them; a bad result drops the session."""
        digest_hex(expected_digest)
        with self._open_session(upload_id) as f:
            tmp = self._tmp / f"{uuid.uuid4().hex}.tmp"
            # Moving the session aside under the lock ends it for concurrent
            # writers (they see another inode) and avoids copying the bytes.
            os.replace(self._session_path(upload_id), tmp)
            try:
                f.seek(0)
                hasher = hashlib.sha256()
                size = 0
                for chunk in iter_file(f):
                    hasher.update(chunk)
                    size += len(chunk)
                if max_size is not None and size > max_size:
                    raise upload_error(f"upload larger than the limit of {max_size} bytes", 413)
                os.fsync(f.fileno())
                return self._commit(tmp, f"sha256:{hasher.hexdigest()}", size, expected_digest)
            finally:
                tmp.unlink(missing_ok=True)

    def abort_upload(self, upload_id: str) -> None:
        """Drop a session and its bytes."""
        with self._open_session(upload_id):
            self._session_path(upload_id).unlink()


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _fsync_dir(directory: Path) -> None:
    # The rename is durable only once the directory entry itself is on disk.
    fd = os.open(directory, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
