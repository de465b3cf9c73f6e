"""A :class:`~farm.registry.store.filesystem.BlobStore` on an S3-compatible object store.

AWS S3, MinIO, Ceph RGW, moto.  Layout under ``prefix`` in the bucket::

    blobs/sha256/<hex>            committed blobs: visible only once their hash matched
    tmp/<uuid>                    uploads whose digest was not promised (put_stream)
    uploads/<uuid>/session        marker of a resumable upload session
    uploads/<uuid>/<offset:020d>  the session's chunks, one object each

Writes hash while streaming: bytes go out as a multipart upload, one part in memory at
a time.  When the digest is promised, the multipart upload targets the final key and is
*completed* only after the hash matched, so readers never see unverified bytes and no
server-side copy is needed; on mismatch it is aborted and nothing is stored.  Identical
bytes are stored once: an intact blob already present (HEAD, then a cached verify) is
not uploaded again.  GC never looks under ``uploads/`` or ``tmp/``.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from farm.domain.gc import BlobEntry
from farm.errors import BlobNotFound, CorruptBlob, DigestMismatch, RegistryError, ServiceUnavailable
from farm.registry.store.base import checked_chunks
from farm.registry.store.digests import CHUNK_SIZE, BlobInfo, digest_hex, session_id, upload_error

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# S3's smallest part (but the last) is 5 MiB; 8 MiB keeps memory flat and calls few.
DEFAULT_PART_SIZE = 8 * 1024 * 1024
_VERIFIED_CACHE = 10_000
_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchUpload"}


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3BlobStore:
    """Blobs as objects named by digest; sessions as one object per chunk."""

    def __init__(
        self, client: S3Client, bucket: str, prefix: str = "", part_size: int = DEFAULT_PART_SIZE
    ) -> None:
        if part_size < 5 * 1024 * 1024:
            raise RegistryError("S3 multipart parts must be at least 5 MiB")
        self._s3 = client
        self.bucket = bucket
        self.prefix = prefix
        self.part_size = part_size
        # digest -> ETag of the object that last hashed right.  S3 objects are
        # immutable, so an unchanged ETag means unchanged bytes (verify cached=True).
        self._verified: OrderedDict[str, str] = OrderedDict()

    # --- plumbing --------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
        """One S3 call; transport failures become ServiceUnavailable, 404s BlobNotFound."""
        try:
            return fn(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                raise BlobNotFound(f"{what}: not found in s3://{self.bucket}") from None
            raise RegistryError(f"{what}: S3 error {_code(exc)}: {exc}") from None
        except BotoCoreError as exc:
            raise ServiceUnavailable(f"{what}: object store unreachable: {exc}") from None

    def ensure_bucket(self) -> None:
        """Create the bucket when missing (idempotent)."""
        try:
            self._call("bucket", self._s3.head_bucket)
        except BlobNotFound:
            self._call("create bucket", self._s3.create_bucket)

    def _key(self, *parts: str) -> str:
        return self.prefix + "/".join(parts)

    def _blob_key(self, digest: str) -> str:
        return self._key("blobs", "sha256", digest_hex(digest))

    def _stream_object(
        self,
        key: str,
        chunks: Iterable[bytes],
        max_size: int | None,
        accept: Callable[[BlobInfo], None],
    ) -> BlobInfo:
        """Upload ``chunks`` to ``key`` while hashing; ``accept`` may veto before it shows."""
        hasher = hashlib.sha256()
        size = 0
        buf = bytearray()
        parts: list[dict[str, Any]] = []
        upload_id: str | None = None
        try:
            for chunk in chunks:
                size += len(chunk)
                if max_size is not None and size > max_size:
                    raise upload_error(f"blob larger than the limit of {max_size} bytes", 413)
                hasher.update(chunk)
                buf += chunk
                while len(buf) >= self.part_size:
                    if upload_id is None:
                        upload_id = self._call(key, self._s3.create_multipart_upload, Key=key)[
                            "UploadId"
                        ]
                    parts.append(self._part(key, upload_id, len(parts) + 1, buf[: self.part_size]))
                    del buf[: self.part_size]
            info = BlobInfo(f"sha256:{hasher.hexdigest()}", size)
            accept(info)
            if upload_id is None:  # small: one PUT, atomic like the multipart completion
                self._call(key, self._s3.put_object, Key=key, Body=bytes(buf))
            else:
                if buf:
                    parts.append(self._part(key, upload_id, len(parts) + 1, buf))
                self._call(
                    key,
                    self._s3.complete_multipart_upload,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
                upload_id = None
            return info
        finally:
            if upload_id is not None:  # vetoed, too large, or the client went away
                # If this fails too, the bucket's lifecycle rule for stale uploads cleans up.
                with contextlib.suppress(ClientError, BotoCoreError):
                    self._s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)

    def _part(self, key: str, upload_id: str, number: int, data: bytearray) -> dict[str, Any]:
        resp = self._call(
            key,
            self._s3.upload_part,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=bytes(data),
        )
        return {"PartNumber": number, "ETag": resp["ETag"]}

    def _intact(self, digest: str) -> bool:
        """Whether a blob is stored and hashes right (cheap when verified before)."""
        try:
            self.verify(digest, cached=True)
            return True
        except (BlobNotFound, CorruptBlob):
            return False

    # --- blobs -----------------------------------------------------------------------

    def has(self, digest: str) -> bool:
        """Whether a blob with this digest is stored (one HEAD)."""
        return self._head(digest) is not None

    def _head(self, digest: str) -> dict[str, Any] | None:
        try:
            return dict(self._call(digest, self._s3.head_object, Key=self._blob_key(digest)))
        except BlobNotFound:
            return None

    def _head_or_404(self, digest: str) -> dict[str, Any]:
        if (head := self._head(digest)) is None:
            raise BlobNotFound(f"blob {digest} not found")
        return head

    def stat(self, digest: str) -> BlobInfo:
        """Size of a stored blob; BlobNotFound if absent."""
        return BlobInfo(digest, int(self._head_or_404(digest)["ContentLength"]))

    def put_stream(
        self,
        chunks: Iterable[bytes],
        expected_digest: str | None = None,
        max_size: int | None = None,
    ) -> BlobInfo:
        """Stream to S3 while hashing; DigestMismatch or a size error store nothing."""
        if expected_digest is None:
            return self._put_unpromised(chunks, max_size)
        digest_hex(expected_digest)

        def accept(info: BlobInfo) -> None:
            if info.digest != expected_digest:
                raise DigestMismatch(
                    f"uploaded bytes have digest {info.digest}, not {expected_digest}"
                )

        if self._intact(expected_digest):  # dedupe: hash what arrives, write nothing
            info = _drain(chunks, max_size)
            accept(info)
            return info
        return self._stream_object(self._blob_key(expected_digest), chunks, max_size, accept)

    def _put_unpromised(self, chunks: Iterable[bytes], max_size: int | None) -> BlobInfo:
        # The key is only known at the end: park under tmp/, then copy server-side.
        tmp = self._key("tmp", uuid.uuid4().hex)
        try:
            info = self._stream_object(tmp, chunks, max_size, lambda _: None)
            if not self._intact(info.digest):
                source = {"Bucket": self.bucket, "Key": tmp}
                try:  # managed copy: multipart copy above 5 GiB
                    self._s3.copy(source, self.bucket, self._blob_key(info.digest))  # type: ignore[arg-type]
                except (ClientError, BotoCoreError) as exc:
                    raise RegistryError(f"could not commit {info.digest}: {exc}") from None
            return info
        finally:
            self._s3.delete_object(Bucket=self.bucket, Key=tmp)

    def put_file(self, path: Any, expected_digest: str | None = None) -> BlobInfo:
        """Store a local file's bytes."""
        with open(path, "rb") as f:
            return self.put_stream(iter(lambda: f.read(CHUNK_SIZE), b""), expected_digest)

    def open_read(self, digest: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """Chunks of a blob from ``offset``; a whole-blob read raises CorruptBlob at its end."""
        size = self.stat(digest).size  # BlobNotFound now, not at the first next()
        if offset < 0 or offset > size or (length is not None and length < 0):
            raise RegistryError(f"range {offset}+{length} outside blob {digest} of {size} bytes")
        end = size if length is None else min(size, offset + length)
        return self._read(digest, offset, end, whole=offset == 0 and end == size)

    def _read(self, digest: str, start: int, end: int, whole: bool) -> Iterator[bytes]:
        if start >= end:
            return
        kwargs: dict[str, Any] = {"Key": self._blob_key(digest)}
        if not whole:
            kwargs["Range"] = f"bytes={start}-{end - 1}"
        try:
            resp = self._call(digest, self._s3.get_object, **kwargs)
        except BlobNotFound:  # deleted between stat and read
            raise BlobNotFound(f"blob {digest} not found") from None
        body = resp["Body"]
        try:
            if not whole:
                yield from body.iter_chunks(CHUNK_SIZE)
                return
            yield from checked_chunks(
                body.iter_chunks(CHUNK_SIZE),
                digest,
                f"blob {digest} is corrupted in the object store",
            )
        finally:
            body.close()

    def verify(self, digest: str, *, cached: bool = False) -> BlobInfo:
        """Re-hash a blob by downloading it; ``cached`` trusts an unchanged ETag."""
        head = self._head_or_404(digest)
        etag = str(head.get("ETag", ""))
        if cached and etag and self._verified.get(digest) == etag:
            return BlobInfo(digest, int(head["ContentLength"]))
        info = _drain(self._read(digest, 0, int(head["ContentLength"]), whole=False), None)
        if info.digest != digest:
            self._verified.pop(digest, None)
            raise CorruptBlob(f"blob {digest} is corrupted in the object store: {info.digest}")
        self._verified[digest] = etag
        self._verified.move_to_end(digest)
        while len(self._verified) > _VERIFIED_CACHE:
            self._verified.popitem(last=False)
        return info

    def path_for(self, digest: str) -> None:
        """Remote store: no local path."""
        return None

    def delete(self, digest: str) -> None:
        """Remove a blob; absent is fine."""
        self._verified.pop(digest, None)
        self._call(digest, self._s3.delete_object, Key=self._blob_key(digest))

    def _list(self, prefix: str) -> Iterator[dict[str, Any]]:
        paginator = self._s3.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                yield from page.get("Contents", [])  # type: ignore[misc]
        except BotoCoreError as exc:
            raise ServiceUnavailable(f"object store unreachable: {exc}") from None

    def iter_entries(self) -> Iterator[BlobEntry]:
        """Every committed blob with its size and upload time (for GC's grace window)."""
        root = self._key("blobs", "sha256", "")
        for obj in self._list(root):
            name = obj["Key"][len(root) :]
            if len(name) == 64 and all(c in "0123456789abcdef" for c in name):
                yield BlobEntry(f"sha256:{name}", int(obj["Size"]), obj["LastModified"].timestamp())

    def iter_digests(self) -> Iterator[str]:
        """Every committed digest (never temp objects or upload sessions)."""
        return (entry.digest for entry in self.iter_entries())

    # --- resumable sessions ----------------------------------------------------------

    def _session(self, upload_id: str) -> list[tuple[int, int, str]]:
        """(offset, size, key) of a session's chunks in order; 404 if no such session."""
        root = self._key("uploads", session_id(upload_id), "")
        chunks, marker = [], False
        for obj in self._list(root):
            name = obj["Key"][len(root) :]
            if name == "session":
                marker = True
            elif name.isdigit():
                chunks.append((int(name), int(obj["Size"]), obj["Key"]))
        if not marker:
            raise upload_error(f"unknown upload session {upload_id}", 404)
        return sorted(chunks)

    def start_upload(self) -> str:
        """Open a resumable upload session; returns its uuid."""
        upload_id = str(uuid.uuid4())
        self._call("session", self._s3.put_object, Key=self._key("uploads", upload_id, "session"))
        return upload_id

    def upload_status(self, upload_id: str) -> int:
        """Bytes received so far by a session."""
        return sum(size for _, size, _ in self._session(upload_id))

    def upload_chunk(
        self, upload_id: str, offset: int, chunks: Iterable[bytes], max_size: int | None = None
    ) -> int:
        """Store one chunk at ``offset`` (must equal the session's size); all or nothing.

        Unlike the filesystem store, a chunk cut off mid-way keeps none of its bytes:
        the client resumes from ``upload_status`` either way.
        """
        current = self.upload_status(upload_id)
        if offset != current:
            raise upload_error(f"expected offset {current}, got {offset}", 416)
        key = self._key("uploads", upload_id, f"{offset:020d}")
        limit = None if max_size is None else max_size - offset
        info = self._stream_object(key, chunks, limit, lambda _: None)
        if info.size == 0:  # an empty chunk must not shadow the next one at this offset
            self._s3.delete_object(Bucket=self.bucket, Key=key)
        return offset + info.size

    def finish_upload(
        self, upload_id: str, expected_digest: str, max_size: int | None = None
    ) -> BlobInfo:
        """Verify and commit a session's bytes as a blob; the session ends either way."""
        digest_hex(expected_digest)
        parts = self._session(upload_id)
        try:
            total = sum(size for _, size, _ in parts)
            if max_size is not None and total > max_size:
                raise upload_error(f"upload larger than the limit of {max_size} bytes", 413)
            return self.put_stream(self._concat(parts), expected_digest, max_size)
        finally:
            self._drop_session(upload_id)

    def _concat(self, parts: list[tuple[int, int, str]]) -> Iterator[bytes]:
        for _, _, key in parts:
            body = self._call(key, self._s3.get_object, Key=key)["Body"]
            try:
                yield from body.iter_chunks(CHUNK_SIZE)
            finally:
                body.close()

    def _drop_session(self, upload_id: str) -> None:
        for obj in self._list(self._key("uploads", upload_id, "")):
            self._s3.delete_object(Bucket=self.bucket, Key=obj["Key"])

    def abort_upload(self, upload_id: str) -> None:
        """Drop a session and its bytes."""
        self._session(upload_id)
        self._drop_session(upload_id)


def _drain(chunks: Iterable[bytes], max_size: int | None) -> BlobInfo:
    """Digest and size of a stream, keeping nothing."""
    hasher = hashlib.sha256()
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if max_size is not None and size > max_size:
            raise upload_error(f"blob larger than the limit of {max_size} bytes", 413)
        hasher.update(chunk)
    return BlobInfo(f"sha256:{hasher.hexdigest()}", size)
