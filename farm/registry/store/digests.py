"""Digests and checksums of blobs: their sha256 names and their at-rest XXH3-128.

Names: a blob is ``sha256:<64 hex>`` of its bytes (as OCI names them).

At-rest checksums: a second, fast digest of every stored blob, to verify reads cheaply.

A blob is named by its sha256, and clients check that name on every transfer.  The
store must also refuse to serve bytes that rotted on its disk, and re-hashing sha256
for that costs a full core at about 1.8 GB/s, on top of the client's own sha256: on
a 2-core host the two passes were the ceiling of download speed.  So when a blob is
committed the store records its XXH3-128 (computed alongside the sha256, at about
30 GB/s from memory here against sha256's 1.8) and whole reads check that instead.
A checksum, not a cryptographic hash, as ZFS's fletcher4 or Ceph's crc32c: it is
there to catch rot and torn writes; a forgery is what the clients' sha256 catches.
(BLAKE3 was the first choice: 4.5 GB/s, and its thread still cost uploads about
7 %.)  A mismatch is confirmed with a full sha256 before the blob is called
corrupted: a damaged record is rewritten, never blamed on the blob.  Blobs without a
record (an older store, or another algorithm's) are checked by sha256, and the
record is written again.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import xxhash

from farm.errors import RegistryError, UploadError

AT_REST = "xxh3-128"
CHUNK_SIZE = 1024 * 1024
DIGEST_RE = re.compile(r"sha256:([0-9a-f]{64})")


@dataclass(frozen=True)
class BlobInfo:
    """A stored blob: its digest (``sha256:<hex>``) and size in bytes."""

    digest: str
    size: int


def digest_hex(digest: str) -> str:
    """The hex part of a ``sha256:<64 hex>`` digest; UploadError if malformed."""
    match = DIGEST_RE.fullmatch(digest) if isinstance(digest, str) else None
    if match is None:
        raise UploadError(f"invalid digest {digest!r}: expected 'sha256:' and 64 lowercase hex")
    return match.group(1)


def session_id(upload_id: str) -> str:
    """``upload_id`` if it is a canonical uuid (so it can never name another path or
    key), else UploadError 404."""
    try:
        canonical = str(uuid.UUID(upload_id))
    except (ValueError, TypeError, AttributeError):
        canonical = ""
    if canonical != upload_id:
        raise upload_error(f"unknown upload session {upload_id!r}", 404)
    return upload_id


def storage_error(exc: OSError) -> RegistryError:
    """A RegistryError for a failed write to the store's disk: 507 when it is full."""
    error = RegistryError(f"cannot write to the blob store: {exc.strerror or exc}")
    error.http_status = 507 if exc.errno in (errno.ENOSPC, errno.EDQUOT) else 500
    return error


def upload_error(message: str, status: int) -> UploadError:
    """An UploadError carrying a more precise HTTP status (413, 416, 404)."""
    error = UploadError(message)
    error.http_status = status  # the tree has one UploadError; HTTP wants finer codes
    return error


def feed_fd(fd: int, sink: Callable[[bytes], object]) -> int:
    """Feed an open file's bytes to ``sink`` in chunks, read with pread (the offset is
    untouched); returns how many."""
    offset = 0
    while chunk := os.pread(fd, 4 * CHUNK_SIZE, offset):
        sink(chunk)
        offset += len(chunk)
    return offset


def hash_fd(fd: int, hasher: Hasher) -> str:
    """Hex digest of an open file's bytes."""
    feed_fd(fd, hasher.update)
    return hasher.hexdigest()


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


class Hasher(Protocol):
    """What hashlib's and xxhash's hash objects share."""

    def update(self, data: bytes | memoryview, /) -> object:
        """Feed bytes."""

    def hexdigest(self) -> str:
        """The digest so far, in hex."""


def at_rest_hasher() -> Hasher:
    """A fresh at-rest checksum (XXH3-128; releases the GIL on big buffers)."""
    return xxhash.xxh3_128()


@dataclass(frozen=True)
class Sums:
    """What committing a blob needs: its name, its size, its at-rest checksum (hex)."""

    digest: str
    size: int
    at_rest: str | None = None


class BlobHasher:
    """sha256 and the at-rest checksum of the same bytes, fed once."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._at_rest = at_rest_hasher()
        self.size = 0

    def update(self, chunk: bytes) -> None:
        """Feed the next bytes to both."""
        self._sha.update(chunk)
        self._at_rest.update(chunk)
        self.size += len(chunk)

    def sums(self) -> Sums:
        """Digest, size and at-rest checksum of everything fed."""
        return Sums(f"sha256:{self._sha.hexdigest()}", self.size, self._at_rest.hexdigest())


def held_until_checked(
    chunks: Iterable[bytes], hasher: Hasher, expected: str, on_mismatch: Callable[[], object]
) -> Iterator[bytes]:
    """Pass ``chunks`` on, holding the last one back until their hash is ``expected``.

    On a mismatch ``on_mismatch()`` decides: raise (the bytes are bad, and their
    consumer never gets the end of them) or return (they were vouched for another
    way) and the last chunk follows.
    """
    held: bytes | None = None
    for chunk in chunks:
        hasher.update(chunk)
        if held is not None:
            yield held
        held = chunk
    if hasher.hexdigest() != expected:
        on_mismatch()
    if held is not None:
        yield held


class ChecksumRecords:
    """``<root>/<ab>/<hex>`` files holding each blob's at-rest checksum.

    Not fsynced: a record lost or torn in a crash only sends the next read to the
    slow sha256 path, which writes it again.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, hexdigest: str) -> Path:
        return self.root / hexdigest[:2] / hexdigest

    def read(self, hexdigest: str) -> str | None:
        """The recorded checksum (hex), or None when there is no usable record."""
        try:
            algorithm, _, value = self._path(hexdigest).read_text().strip().partition(":")
        except (OSError, UnicodeDecodeError):
            return None
        return value if algorithm == AT_REST and value else None

    def write(self, hexdigest: str, value: str) -> None:
        """Record (or replace) a blob's checksum atomically."""
        path = self._path(hexdigest)
        path.parent.mkdir(exist_ok=True)
        tmp = path.parent / f".{uuid.uuid4().hex}.tmp"
        tmp.write_text(f"{AT_REST}:{value}\n")
        os.replace(tmp, path)

    def drop(self, hexdigest: str) -> None:
        """Forget a blob's record (the blob is gone)."""
        self._path(hexdigest).unlink(missing_ok=True)
