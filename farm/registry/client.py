"""Worker-side client of the blob API: the only way a worker moves bytes.

Every transfer is checked by sha256 at both ends.  Retries and errors follow
farm's one HTTP rule (:mod:`farm.http`): connection errors and retryable 5xx
answers (API or data plane) are tried again with exponential backoff (bounded);
4xx answers are the caller's fault and raise the FarmError the server named, with
its message.  Every blob operation is idempotent (content addressing, offsets).
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import threading
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import BinaryIO, TypeVar

import httpx

from farm import errors
from farm.errors import DigestMismatch, UploadError
from farm.http import HttpClient, HttpConfig, RetryPolicy
from farm.http import error_from_response as error_from_response  # its old home
from farm.registry.store.digests import CHUNK_SIZE, BlobInfo, digest_hex, hash_file, iter_file
from farm.registry.transfer import zerocopy
from farm.registry.transfer.client import (
    DataPlaneUnreachable,
    DirectBlobClient,
    Download,
    TransferError,
)
from farm.registry.transfer.wire import BLOBS as PREFIX

T = TypeVar("T")
ENDPOINTS = "/api/v1/registry/endpoints"
log = logging.getLogger("farm.registry.client")
DEFAULT_CHUNK = 8 * 1024 * 1024


class RegistryClient:
    """Sync HTTP client for ``/api/v1/blobs`` (upload, download, existence)."""

    def __init__(
        self,
        base_url: str,
        timeout: float = 60.0,
        token: str | None = None,
        *,
        attempts: int = 5,
        backoff: float = 0.5,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        retry = RetryPolicy(attempts=attempts, backoff=backoff, max_wait=10.0)
        self._core = HttpClient(
            HttpConfig(self.base_url, timeout=timeout, token=token, retry=retry)
        )
        self._http = self._core.raw  # requests are composed into attempts run by _call
        self._timeout = timeout
        self._token = token
        self._direct: DirectBlobClient | bool | None = zerocopy.available()  # True: not asked

    def close(self) -> None:
        """Close the connection pool."""
        self._core.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, attempt: Callable[[], T]) -> T:
        """Run one request-shaped ``attempt`` (API or data plane) under farm's retry rule.

        A broken data-plane transfer counts as a transport failure; the data plane's
        error answers are FarmErrors with their status, classified like the API's.
        """
        return self._core.call(attempt, transient=(TransferError,))

    def _data_plane(self) -> DirectBlobClient | None:
        """The API's blob data plane, asked for once; None when it has none (or is old)."""
        if self._direct is True:
            self._direct = None
            try:
                response = self._http.get(ENDPOINTS)
                url = response.json().get("blob_data") if response.is_success else None
                if isinstance(url, str):
                    self._direct = DirectBlobClient(url, self._timeout, self._token)
            except (httpx.HTTPError, ValueError, AttributeError) as exc:
                log.info("no blob data plane at %s: %s", self.base_url, exc)
        return self._direct if isinstance(self._direct, DirectBlobClient) else None

    def _unreachable(self, exc: DataPlaneUnreachable) -> None:
        log.warning("%s; moving blobs through the API instead", exc)
        self._direct = None

    def _check(self, response: httpx.Response) -> httpx.Response:
        return self._core.check(response)

    def exists(self, digest: str) -> bool:
        """Whether the farm has an intact blob with this digest (HEAD)."""
        digest_hex(digest)

        def attempt() -> bool:
            response = self._http.head(f"{PREFIX}/{digest}")
            if response.status_code == 404:
                return False
            self._check(response)
            return True

        try:
            return self._call(attempt)
        except errors.CorruptBlob:
            return False  # the server's copy is bad: an upload will replace it

    def upload_file(self, path: Path, info: BlobInfo | None = None) -> BlobInfo:
        """Upload a file in one PUT, unless the farm already has its digest.

        ``info``: the file's digest and size when already known (an archive hashed
        while it was packed), which saves reading it once more.
        """
        info = info or hash_file(path)
        if not self.exists(info.digest):
            self.put_file(path, info)
        return info

    def put_file(self, path: Path, info: BlobInfo) -> None:
        """Upload a file whose digest and size are already known, in one PUT."""
        direct = self._data_plane()
        if direct is not None:
            try:
                return self._call(lambda: direct.put_file(path, info))
            except DataPlaneUnreachable as exc:
                self._unreachable(exc)

        def attempt() -> None:
            with open(path, "rb") as f:  # reopened per attempt: a retry starts over
                headers = {"Content-Length": str(info.size)}
                self._check(self._http.put(f"{PREFIX}/{info.digest}", content=f, headers=headers))

        self._call(attempt)

    def upload_resumable(self, path: Path, chunk_size: int = DEFAULT_CHUNK) -> BlobInfo:
        """Upload through a session in ``chunk_size`` PATCHes, resuming after failures."""
        info = hash_file(path)
        if self.exists(info.digest):
            return info
        location = self._call(lambda: self._check(self._http.post(f"{PREFIX}/uploads")))
        url = location.headers["location"]
        offset = 0
        with open(path, "rb") as f:
            while offset < info.size:
                length = min(chunk_size, info.size - offset)
                offset = self._call(partial(self._send_chunk, url, f, offset, length))
        try:
            params = {"digest": info.digest}
            self._call(lambda: self._check(self._http.put(url, params=params, content=b"")))
        except errors.UploadError as exc:
            # A finish whose answer was lost ended the session: the blob is there.
            if exc.http_status != 404 or not self.exists(info.digest):
                raise
        return info

    def _send_chunk(self, url: str, f: BinaryIO, offset: int, length: int) -> int:
        """One PATCH of ``length`` bytes from ``offset``; after a failure the server's wins."""
        f.seek(offset)
        headers = {
            "Content-Length": str(length),
            "Upload-Offset": str(offset),
            "Content-Range": f"{offset}-{offset + length - 1}",
        }
        # Streamed from the file in small pieces: a big chunk is never in memory.
        content = iter_file(f, length)
        try:
            response = self._check(self._http.patch(url, content=content, headers=headers))
        except UploadError as exc:
            if exc.http_status != 416:
                raise
            # Part of an earlier attempt landed before its connection dropped:
            # continue from wherever the server says the session is.
            return int(self._check(self._http.get(url)).headers["upload-offset"])
        return int(response.headers["upload-offset"])

    def download_to(self, digest: str, dest: Path, durable: bool = True) -> BlobInfo:
        """Download a blob to ``dest`` atomically, resuming with Range after drops.

        Bytes go to a temp file beside ``dest`` and are hashed as they arrive;
        a digest mismatch removes the temp file and raises DigestMismatch.
        ``durable=False`` skips the fsync, for scratch files used and deleted at once
        (a worker's job inputs), where a crash loses the whole workspace anyway.
        """
        digest_hex(digest)
        dest = Path(dest)
        direct = self._data_plane()
        if direct is not None:
            try:
                return self._download_direct(direct, digest, dest, durable)
            except DataPlaneUnreachable as exc:
                self._unreachable(exc)
        tmp = _part_path(dest)
        # Hash and size survive failed attempts so a retry resumes with Range.
        progress = _Progress()

        def attempt(out: BinaryIO) -> None:
            headers = {"Range": f"bytes={progress.size}-"} if progress.size else {}
            with self._http.stream("GET", f"{PREFIX}/{digest}", headers=headers) as response:
                self._check(response)
                if response.status_code == 200 and progress.size:
                    out.truncate(0)  # the server sent everything again: start over
                    out.seek(0)
                    progress.reset()

                # Blobs are never content-encoded: iter_raw skips httpx's decoder, and
                # without a chunk size it hands over the pieces as read (no re-join).
                def sink(chunk: bytes) -> None:
                    out.write(chunk)
                    progress.add(chunk)

                pump(response.iter_raw(), sink)

        try:
            with open(tmp, "wb") as out:
                self._call(lambda: attempt(out))
                out.flush()
                if durable:
                    os.fsync(out.fileno())
            got = f"sha256:{progress.hasher.hexdigest()}"
            if got != digest:
                raise DigestMismatch(f"downloaded bytes of {digest} hash to {got}")
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return BlobInfo(digest, progress.size)

    def _download_direct(
        self, direct: DirectBlobClient, digest: str, dest: Path, durable: bool
    ) -> BlobInfo:
        """``download_to`` through the data plane: spliced in, hashed behind, then renamed."""
        tmp = _part_path(dest)
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            download = Download(fd)
            try:
                self._call(lambda: direct.get_into(digest, download))
            except BaseException:
                download.hasher.cancel()  # the bytes are of no use: stop hashing them
                raise
            got = f"sha256:{download.hasher.finish()}"
            if got != digest:
                raise DigestMismatch(f"downloaded bytes of {digest} hash to {got}")
            if durable:
                os.fsync(fd)
            os.replace(tmp, dest)
            return BlobInfo(digest, download.size)
        finally:
            os.close(fd)
            tmp.unlink(missing_ok=True)


def _part_path(dest: Path) -> Path:
    """A unique temp name beside ``dest``: a download is renamed in place when whole."""
    return dest.parent / f".{dest.name}.{uuid.uuid4().hex}.part"


def pump(
    chunks: Iterator[bytes],
    sink: Callable[[bytes], object],
    depth: int = 8,
    batch_bytes: int = CHUNK_SIZE,
) -> None:
    """Receive on this thread while another hashes and writes (both release the GIL).

    Receiving, hashing and writing one after the other left a core idle.  Pieces
    (64 KiB from httpx) cross to the other thread in lists of ``batch_bytes``, so a
    thread hop is paid per MiB without joining (copying) the pieces; the queue bounds
    memory to ``depth`` batches.
    """
    q: queue.Queue[list[bytes] | None] = queue.Queue(maxsize=depth)
    errors: list[BaseException] = []

    def consume() -> None:
        while (batch := q.get()) is not None:
            if not errors:  # after a failure keep draining so the producer never blocks
                try:
                    for chunk in batch:
                        sink(chunk)
                except BaseException as exc:
                    errors.append(exc)

    worker = threading.Thread(target=consume, name="farm-download-sink", daemon=True)
    worker.start()
    try:
        batch: list[bytes] = []
        size = 0
        for chunk in chunks:
            if errors:
                break
            batch.append(chunk)
            size += len(chunk)
            if size >= batch_bytes:
                q.put(batch)
                batch, size = [], 0
        if batch and not errors:
            q.put(batch)
    finally:
        q.put(None)
        worker.join()
    if errors:
        raise errors[0]


class _Progress:
    """Bytes received so far by a download, across attempts."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.hasher = hashlib.sha256()
        self.size = 0

    def add(self, chunk: bytes) -> None:
        self.hasher.update(chunk)
        self.size += len(chunk)
