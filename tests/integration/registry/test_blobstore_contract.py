"""One contract for every BlobStore: the filesystem store and S3 (a real moto_server).

Each test runs against both; store-specific behaviour (where bytes live, how to
corrupt them) is behind the small :class:`Harness`.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from farm.errors import BlobNotFound, CorruptBlob, DigestMismatch, RegistryError, UploadError
from farm.registry.store import BlobStore, FilesystemBlobStore
from farm.registry.store.digests import digest_hex
from farm.registry.store.s3 import S3BlobStore
from tests.farmtest import at_once

if TYPE_CHECKING:
    from conftest import AppFactory, S3Server, ServeFactory

MiB = 1024 * 1024


def sha(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def chunked(data: bytes, size: int = 300_000) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


@dataclass
class Harness:
    """A store under test, and how to damage a stored blob behind its back."""

    kind: str
    store: BlobStore
    corrupt: Callable[[str, bytes], None]


def _fs(tmp_path: Path) -> Harness:
    store = FilesystemBlobStore(tmp_path / "registry")

    def corrupt(digest: str, data: bytes) -> None:
        path = store.path_for(digest)
        assert path is not None
        path.write_bytes(data)

    return Harness("fs", store, corrupt)


def _s3(server: S3Server) -> Harness:
    client = server.client()
    bucket = f"farm-{uuid.uuid4().hex[:12]}"
    store = S3BlobStore(client, bucket, prefix="t/", part_size=5 * MiB)
    store.ensure_bucket()

    def corrupt(digest: str, data: bytes) -> None:
        client.put_object(Bucket=bucket, Key=f"t/blobs/sha256/{digest_hex(digest)}", Body=data)

    return Harness("s3", store, corrupt)


@pytest.fixture(params=["fs", "s3"])
def h(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    if request.param == "fs":
        return _fs(tmp_path)
    return _s3(request.getfixturevalue("s3_server"))


def read_all(store: BlobStore, digest: str, offset: int = 0, length: int | None = None) -> bytes:
    return b"".join(store.open_read(digest, offset, length))


def test_put_read_stat_and_dedupe(h: Harness) -> None:
    data = os.urandom(1_000_000)
    info = h.store.put_stream(chunked(data), sha(data))
    assert (info.digest, info.size) == (sha(data), len(data))
    assert h.store.has(info.digest) and h.store.stat(info.digest).size == len(data)
    assert read_all(h.store, info.digest) == data
    # Same bytes again, promised or not: still one blob.
    assert h.store.put_stream(chunked(data)).digest == info.digest
    assert h.store.put_stream(iter([data]), info.digest) == info
    assert list(h.store.iter_digests()) == [info.digest]
    assert h.store.verify(info.digest) == info
    assert h.store.verify(info.digest, cached=True) == info


def test_multipart_sized_blob_round_trips(h: Harness) -> None:
    # Bigger than one S3 part with odd chunk sizes: parts are re-cut on the way.
    data = os.urandom(12 * MiB + 12345)
    info = h.store.put_stream(chunked(data, 777_777), sha(data))
    assert info.size == len(data)
    assert read_all(h.store, info.digest) == data
    unpromised = os.urandom(6 * MiB)
    assert h.store.put_stream(chunked(unpromised)).digest == sha(unpromised)
    assert read_all(h.store, sha(unpromised)) == unpromised


def test_digest_mismatch_stores_nothing(h: Harness) -> None:
    data = os.urandom(7 * MiB)  # past one part: an aborted multipart upload leaves nothing
    with pytest.raises(DigestMismatch):
        h.store.put_stream(chunked(data), sha(b"other"))
    assert list(h.store.iter_digests()) == []
    assert not h.store.has(sha(data))


def test_over_the_size_limit_is_413_and_stores_nothing(h: Harness) -> None:
    data = os.urandom(6 * MiB)
    with pytest.raises(UploadError) as err:
        h.store.put_stream(chunked(data), sha(data), max_size=5 * MiB)
    assert err.value.http_status == 413
    with pytest.raises(UploadError):
        h.store.put_stream(chunked(data), None, max_size=1000)
    assert list(h.store.iter_digests()) == []


@pytest.mark.parametrize("bad", ["abc", "sha256:XYZ", "md5:" + "0" * 32, "sha256:" + "0" * 63])
def test_malformed_digest_is_an_upload_error(h: Harness, bad: str) -> None:
    with pytest.raises(UploadError):
        h.store.put_stream(iter([b"x"]), bad)
    with pytest.raises(UploadError):
        h.store.stat(bad)


def test_missing_blob_is_blob_not_found(h: Harness) -> None:
    missing = sha(b"never stored")
    assert not h.store.has(missing)
    for call in (
        lambda: h.store.stat(missing),
        lambda: h.store.open_read(missing),
        lambda: h.store.verify(missing),
    ):
        with pytest.raises(BlobNotFound):
            call()
    h.store.delete(missing)  # absent is fine


def test_ranged_reads(h: Harness) -> None:
    data = bytes(range(256)) * 100
    digest = h.store.put_stream(iter([data])).digest
    assert read_all(h.store, digest, 10, 20) == data[10:30]
    assert read_all(h.store, digest, len(data) - 5) == data[-5:]
    assert read_all(h.store, digest, len(data)) == b""
    assert read_all(h.store, digest, 100, 10**9) == data[100:]
    with pytest.raises(RegistryError):
        h.store.open_read(digest, len(data) + 1)


def test_corruption_is_detected_and_healed_by_reupload(h: Harness) -> None:
    data = os.urandom(200_000)
    digest = h.store.put_stream(iter([data])).digest
    h.store.verify(digest)
    h.corrupt(digest, b"evil" + data[4:])
    with pytest.raises(CorruptBlob):
        h.store.verify(digest)
    with pytest.raises(CorruptBlob):
        read_all(h.store, digest)
    # Same digest uploaded again replaces the damaged copy.
    h.store.put_stream(iter([data]), digest)
    assert read_all(h.store, digest) == data


def test_concurrent_puts_of_the_same_bytes(h: Harness) -> None:
    data = os.urandom(6 * MiB)
    results = at_once(lambda: h.store.put_stream(chunked(data), sha(data)), 4)
    assert [r.digest for r in results if not isinstance(r, BaseException)] == [sha(data)] * 4
    assert list(h.store.iter_digests()) == [sha(data)]
    assert read_all(h.store, sha(data)) == data


def test_session_round_trip_offsets_and_wrong_offset(h: Harness) -> None:
    data = os.urandom(3 * 100_000)
    upload = h.store.start_upload()
    assert h.store.upload_status(upload) == 0
    assert h.store.upload_chunk(upload, 0, iter([data[:100_000]])) == 100_000
    with pytest.raises(UploadError) as err:  # resumed at the wrong offset
        h.store.upload_chunk(upload, 50_000, iter([data[50_000:]]))
    assert err.value.http_status == 416
    assert h.store.upload_status(upload) == 100_000
    assert h.store.upload_chunk(upload, 100_000, chunked(data[100_000:], 70_000)) == len(data)
    assert list(h.store.iter_digests()) == []  # sessions are never blobs
    info = h.store.finish_upload(upload, sha(data))
    assert info.size == len(data) and read_all(h.store, info.digest) == data
    with pytest.raises(UploadError):  # the session ended
        h.store.upload_status(upload)


def test_session_interrupted_mid_chunk_can_resume(h: Harness) -> None:
    data = os.urandom(400_000)
    upload = h.store.start_upload()

    def dropping() -> Iterator[bytes]:
        yield data[:150_000]
        raise ConnectionError("client went away")

    with pytest.raises(ConnectionError):
        h.store.upload_chunk(upload, 0, dropping())
    resume = h.store.upload_status(upload)
    assert resume in (0, 150_000)  # S3 keeps whole chunks only; the filesystem keeps bytes
    h.store.upload_chunk(upload, resume, iter([data[resume:]]))
    assert h.store.finish_upload(upload, sha(data)).digest == sha(data)


def test_session_mismatch_limit_abort_and_unknown_ids(h: Harness) -> None:
    upload = h.store.start_upload()
    h.store.upload_chunk(upload, 0, iter([b"hello"]))
    with pytest.raises(DigestMismatch):
        h.store.finish_upload(upload, sha(b"world"))
    assert list(h.store.iter_digests()) == []

    big = h.store.start_upload()
    with pytest.raises(UploadError) as err:
        h.store.upload_chunk(big, 0, iter([b"x" * 2000]), max_size=1000)
    assert err.value.http_status == 413

    gone = h.store.start_upload()
    h.store.abort_upload(gone)
    for bad in (gone, "../../etc/passwd", "not-a-uuid", str(uuid.uuid4())):
        with pytest.raises(UploadError) as err:
            h.store.upload_status(bad)
        assert err.value.http_status == 404


def test_delete_removes_only_that_blob(h: Harness) -> None:
    a = h.store.put_stream(iter([b"a"])).digest
    b = h.store.put_stream(iter([b"b"])).digest
    session = h.store.start_upload()
    h.store.delete(a)
    assert sorted(h.store.iter_digests()) == [b]
    assert h.store.upload_status(session) == 0  # sessions untouched


def test_blob_http_api_over_s3(
    s3_server: S3Server, serve_app: ServeFactory, blob_app: AppFactory
) -> None:
    """The blob router is store-agnostic: PUT, HEAD, Range GET and a session over S3."""
    store = _s3(s3_server).store
    url = serve_app(blob_app(store, 32 * MiB))  # type: ignore[arg-type]
    data = os.urandom(6 * MiB + 1)
    with httpx.Client(base_url=url, timeout=60) as http:
        assert http.put(f"/api/v1/blobs/{sha(data)}", content=data).status_code == 201
        assert http.head(f"/api/v1/blobs/{sha(data)}").headers["content-length"] == str(len(data))
        part = http.get(f"/api/v1/blobs/{sha(data)}", headers={"Range": "bytes=5-9"})
        assert part.status_code == 206 and part.content == data[5:10]
        assert http.get(f"/api/v1/blobs/{sha(data)}").content == data
        other = os.urandom(1000)
        loc = http.post("/api/v1/blobs/uploads").headers["location"]
        assert http.patch(loc, content=other[:400]).status_code == 202
        wrong = http.patch(loc, content=other[400:], headers={"Upload-Offset": "100"})
        assert wrong.status_code == 416 and wrong.headers["upload-offset"] == "400"
        done = http.put(loc, params={"digest": sha(other)}, content=other[400:])
        assert done.status_code == 201, done.text
        assert http.get(f"/api/v1/blobs/{sha(other)}").content == other


def test_factory_picks_the_store_from_settings(s3_server: S3Server, tmp_path: Path) -> None:
    from farm.registry.factory import make_blob_store
    from farm.settings import Settings

    assert isinstance(make_blob_store(Settings(data_dir=tmp_path)), FilesystemBlobStore)
    settings = Settings(
        data_dir=tmp_path,
        blob_store="s3",
        s3_endpoint=s3_server.url,
        s3_bucket=f"factory-{uuid.uuid4().hex[:8]}",
        s3_access_key_id="farm-test",
        s3_secret_access_key="farm-test-secret",  # type: ignore[arg-type]
    )
    store = make_blob_store(settings)
    assert isinstance(store, S3BlobStore)
    digest = store.put_stream(iter([b"via settings"])).digest
    assert read_all(store, digest) == b"via settings"
