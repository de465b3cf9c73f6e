"""The blob store interface every backend implements (filesystem, S3).

Narrow enough for an object store: the API, the coordinator and garbage collection
see only this Protocol, never a backend's own methods.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

from farm.domain.gc import BlobEntry
from farm.errors import CorruptBlob
from farm.registry.store.digests import BlobInfo, digest_hex, held_until_checked


def checked_chunks(chunks: Iterable[bytes], digest: str, corrupt: str) -> Iterator[bytes]:
    """Pass ``chunks`` on, holding the last one back until their sha256 is ``digest``.

    A consumer of corrupted bytes gets CorruptBlob(``corrupt``) instead of the end of
    the blob, so a corrupted blob is never delivered whole.
    """

    def corrupted() -> None:
        raise CorruptBlob(corrupt)

    return held_until_checked(chunks, hashlib.sha256(), digest_hex(digest), corrupted)


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
        """Every stored digest."""

    def iter_entries(self) -> Iterator[BlobEntry]:
        """Every stored blob with its size and write time, for garbage collection."""

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
