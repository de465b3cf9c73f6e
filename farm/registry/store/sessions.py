"""Resumable upload sessions of the filesystem blob store (OCI-style offsets).

A session is a file under ``uploads/``; one writer at a time holds its flock.
Bytes that arrived before a dropped connection are kept, so a client resumes at
``upload_status``.  Finishing hashes the session and commits it like any blob.
GC never touches sessions younger than its grace window.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from farm.registry.store.digests import (
    BlobHasher,
    BlobInfo,
    Sums,
    digest_hex,
    iter_file,
    session_id,
    upload_error,
)


class UploadSessions:
    """Mixin of :class:`FilesystemBlobStore`: the ``*_upload`` half of the BlobStore."""

    _uploads: Path
    _tmp: Path

    def _commit(self, tmp: Path, sums: Sums, expected: str | None) -> BlobInfo:
        raise NotImplementedError  # the store commits

    def _session_path(self, upload_id: str) -> Path:
        return self._uploads / session_id(upload_id)

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
                hasher = BlobHasher()
                for chunk in iter_file(f):
                    hasher.update(chunk)
                if max_size is not None and hasher.size > max_size:
                    raise upload_error(f"upload larger than the limit of {max_size} bytes", 413)
                os.fsync(f.fileno())
                return self._commit(tmp, hasher.sums(), expected_digest)
            finally:
                tmp.unlink(missing_ok=True)

    def abort_upload(self, upload_id: str) -> None:
        """Drop a session and its bytes."""
        with self._open_session(upload_id):
            self._session_path(upload_id).unlink()
