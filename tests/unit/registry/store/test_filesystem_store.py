"""FilesystemBlobStore on a real filesystem: puts, dedupe, limits, corruption, sessions."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from farm.errors import BlobNotFound, CorruptBlob, DigestMismatch, UploadError
from farm.registry.store.digests import digest_hex, hash_file
from farm.registry.store.filesystem import FilesystemBlobStore
from tests.farmtest import at_once


def sha(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


@pytest.fixture
def store(tmp_path: Path) -> FilesystemBlobStore:
    return FilesystemBlobStore(tmp_path / "store")


def blob_files(store: FilesystemBlobStore) -> list[Path]:
    return [p for p in (store.root / "blobs").rglob("*") if p.is_file()]


def leftovers(store: FilesystemBlobStore) -> list[Path]:
    return list((store.root / "tmp").iterdir())


def test_put_stream_stores_under_digest_and_reads_back(store: FilesystemBlobStore) -> None:
    data = b"hello " * 100_000
    info = store.put_stream([data[:1000], data[1000:]], expected_digest=sha(data))
    assert info.digest == sha(data) and info.size == len(data)
    path = store.path_for(info.digest)
    assert path == store.root / "blobs/sha256" / digest_hex(info.digest)[:2] / info.digest[7:]
    assert store.has(info.digest) and store.stat(info.digest) == info
    assert b"".join(store.open_read(info.digest)) == data
    assert b"".join(store.open_read(info.digest, 6, 5)) == b"hello"
    assert b"".join(store.open_read(info.digest, len(data) - 3)) == data[-3:]
    assert list(store.iter_digests()) == [info.digest]
    assert leftovers(store) == []


def test_identical_bytes_are_stored_once(store: FilesystemBlobStore, tmp_path: Path) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(b"same")
    a = store.put_file(src)
    b = store.put_stream([b"sa", b"me"])
    assert a == b and len(blob_files(store)) == 1 and leftovers(store) == []


def test_mismatch_stores_nothing(store: FilesystemBlobStore) -> None:
    with pytest.raises(DigestMismatch):
        store.put_stream([b"actual"], expected_digest=sha(b"promised"))
    assert blob_files(store) == [] and leftovers(store) == []
    assert not store.has(sha(b"actual"))


def test_over_max_size_is_refused_and_temp_removed(store: FilesystemBlobStore) -> None:
    with pytest.raises(UploadError) as err:
        store.put_stream([b"x" * 10, b"y" * 10], max_size=15)
    assert err.value.http_status == 413
    assert blob_files(store) == [] and leftovers(store) == []


@pytest.mark.parametrize(
    "bad", ["sha256:abc", "md5:" + "0" * 64, "sha256:" + "G" * 64, "sha256:" + "A" * 64, ""]
)
def test_malformed_digest_is_an_upload_error(store: FilesystemBlobStore, bad: str) -> None:
    with pytest.raises(UploadError, match="invalid digest"):
        store.put_stream([b"x"], expected_digest=bad)
    with pytest.raises(UploadError):
        store.has(bad)


def test_missing_blob(store: FilesystemBlobStore) -> None:
    digest = sha(b"nope")
    assert not store.has(digest) and store.path_for(digest) is None
    for call in (store.stat, store.verify, store.open_read):
        with pytest.raises(BlobNotFound):
            call(digest)
    store.delete(digest)  # absent is fine


def test_corruption_is_detected_by_verify_and_full_reads(store: FilesystemBlobStore) -> None:
    data = bytes(range(256)) * 10_000  # several read chunks
    info = store.put_stream([data])
    assert store.verify(info.digest) == info
    path = store.path_for(info.digest)
    assert path is not None
    with open(path, "r+b") as f:
        f.seek(123)
        f.write(b"\xff\x00")
    with pytest.raises(CorruptBlob, match=info.digest):
        store.verify(info.digest, cached=True)
    received = bytearray()
    with pytest.raises(CorruptBlob):
        for chunk in store.open_read(info.digest):
            received += chunk
    assert len(received) < len(data)  # the end of a corrupted blob is never handed out
    # A fresh upload of the right bytes heals the stored copy.
    store.put_stream([data], expected_digest=info.digest)
    assert store.verify(info.digest) == info


def test_verification_record_is_trusted_only_while_file_unchanged(
    store: FilesystemBlobStore,
) -> None:
    store.racy_window_ns = 0
    info = store.put_stream([b"payload" * 1000])
    store.verify(info.digest)
    assert store.verify(info.digest, cached=True) == info
    path = store.path_for(info.digest)
    assert path is not None
    path.write_bytes(b"Payload" + b"payload" * 999)  # same size, new ctime
    with pytest.raises(CorruptBlob):
        store.verify(info.digest, cached=True)


def test_concurrent_puts_of_same_bytes_all_succeed(store: FilesystemBlobStore) -> None:
    data = b"z" * 3_000_000
    pieces = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    results = at_once(lambda: store.put_stream(pieces), 8)
    assert all(r == results[0] for r in results) and len(results) == 8
    assert not isinstance(results[0], BaseException)
    assert len(blob_files(store)) == 1 and leftovers(store) == []
    assert b"".join(store.open_read(sha(data))) == data


def test_delete_and_iter_digests_ignore_sessions(store: FilesystemBlobStore) -> None:
    a = store.put_stream([b"a"])
    b = store.put_stream([b"b"])
    session = store.start_upload()
    store.upload_chunk(session, 0, [b"partial"])
    assert sorted(store.iter_digests()) == sorted([a.digest, b.digest])
    store.delete(a.digest)
    assert list(store.iter_digests()) == [b.digest]
    assert store.upload_status(session) == 7


def test_upload_session_roundtrip_and_offsets(store: FilesystemBlobStore) -> None:
    data = b"0123456789" * 1000
    session = store.start_upload()
    assert store.upload_status(session) == 0
    assert store.upload_chunk(session, 0, [data[:4000]]) == 4000
    with pytest.raises(UploadError, match="expected offset 4000") as err:
        store.upload_chunk(session, 3000, [data[3000:]])
    assert err.value.http_status == 416
    with pytest.raises(UploadError, match="expected offset 4000"):
        store.upload_chunk(session, 5000, [data[5000:]])
    assert store.upload_chunk(session, 4000, [data[4000:7000], data[7000:]]) == len(data)
    mtime = (store.root / "uploads" / session).stat().st_mtime
    assert mtime > 0
    info = store.finish_upload(session, sha(data))
    assert info.size == len(data) and b"".join(store.open_read(info.digest)) == data
    with pytest.raises(UploadError, match="unknown upload session") as gone:
        store.upload_status(session)
    assert gone.value.http_status == 404
    assert list((store.root / "uploads").iterdir()) == [] and leftovers(store) == []


def test_session_interrupted_mid_chunk_keeps_received_bytes(store: FilesystemBlobStore) -> None:
    session = store.start_upload()

    def dropped() -> object:
        yield b"first-half"
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        store.upload_chunk(session, 0, dropped())  # type: ignore[arg-type]
    assert store.upload_status(session) == len(b"first-half")
    store.upload_chunk(session, len(b"first-half"), [b"+second"])
    info = store.finish_upload(session, sha(b"first-half+second"))
    assert b"".join(store.open_read(info.digest)) == b"first-half+second"


def test_session_finish_mismatch_and_size_limit(store: FilesystemBlobStore) -> None:
    session = store.start_upload()
    store.upload_chunk(session, 0, [b"abc"])
    with pytest.raises(DigestMismatch):
        store.finish_upload(session, sha(b"xyz"))
    assert blob_files(store) == [] and leftovers(store) == []
    with pytest.raises(UploadError):
        store.upload_status(session)  # a failed finish ends the session

    session = store.start_upload()
    with pytest.raises(UploadError) as err:
        store.upload_chunk(session, 0, [b"12345", b"6789"], max_size=6)
    assert err.value.http_status == 413
    assert store.upload_status(session) == 5  # the chunk that fit is kept
    with pytest.raises(UploadError):
        store.finish_upload(session, sha(b"12345"), max_size=4)


def test_unknown_or_malicious_session_ids(store: FilesystemBlobStore) -> None:
    for bad in ("../../etc/passwd", "nope", "00000000-0000-0000-0000-000000000000"):
        with pytest.raises(UploadError, match="unknown upload session"):
            store.upload_chunk(bad, 0, [b"x"])
    session = store.start_upload()
    store.abort_upload(session)
    with pytest.raises(UploadError):
        store.upload_chunk(session, 0, [b"x"])


def test_hash_file(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(b"abc")
    assert hash_file(path).digest == sha(b"abc") and hash_file(path).size == 3
