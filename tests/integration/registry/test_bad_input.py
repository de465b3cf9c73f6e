"""Bad input at the blob HTTP API: every refusal is clear and leaves the store consistent."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from farm.registry.store.filesystem import FilesystemBlobStore

if TYPE_CHECKING:
    from conftest import BlobServer

PREFIX = "/api/v1/blobs"


def sha(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def consistent(store: FilesystemBlobStore) -> list[str]:
    """Committed digests, after checking no temp file was left and every blob hashes right."""
    assert list((store.root / "tmp").iterdir()) == []
    digests = list(store.iter_digests())
    for digest in digests:
        store.verify(digest)
    return digests


def test_truncated_put_is_a_digest_mismatch(http: httpx.Client, blob_server: BlobServer) -> None:
    data = os.urandom(500_000)
    resp = http.put(f"{PREFIX}/{sha(data)}", content=data[:-1000])
    assert resp.status_code == 400 and resp.headers["x-farm-error"] == "DigestMismatch"
    assert sha(data) in resp.json()["detail"]
    assert consistent(blob_server.store) == []


def test_truncated_session_cannot_be_finished(http: httpx.Client, blob_server: BlobServer) -> None:
    data = os.urandom(300_000)
    loc = http.post(f"{PREFIX}/uploads").headers["location"]
    assert http.patch(loc, content=data[:100_000]).status_code == 202
    done = http.put(loc, params={"digest": sha(data)})  # the rest never sent
    assert done.status_code == 400 and done.headers["x-farm-error"] == "DigestMismatch"
    assert http.get(loc).status_code == 404  # a failed finish ends the session
    assert consistent(blob_server.store) == []


def test_session_resumed_past_its_end_is_416(http: httpx.Client, blob_server: BlobServer) -> None:
    loc = http.post(f"{PREFIX}/uploads").headers["location"]
    http.patch(loc, content=b"a" * 10)
    ahead = http.patch(loc, content=b"b", headers={"Content-Range": "20-20"})
    assert ahead.status_code == 416 and ahead.headers["upload-offset"] == "10"
    garbage = http.patch(loc, content=b"b", headers={"Upload-Offset": "ten"})
    assert garbage.status_code == 400 and "Upload-Offset" in garbage.json()["detail"]
    assert http.get(loc).headers["upload-offset"] == "10"


def test_chunked_body_over_the_limit_is_413(
    tmp_path: Path, serve_app: object, blob_app: object
) -> None:
    store = FilesystemBlobStore(tmp_path / "small")
    url = serve_app(blob_app(store, 1_000_000))  # type: ignore[operator]
    data = os.urandom(1_500_000)

    def body() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while reading
        for i in range(0, len(data), 100_000):
            yield data[i : i + 100_000]

    with httpx.Client(base_url=url, timeout=30) as client:
        resp = client.put(f"{PREFIX}/{sha(data)}", content=body())
    assert resp.status_code == 413 and "limit" in resp.json()["detail"]
    assert consistent(store) == []


def test_blob_missing_on_disk_is_a_clear_404(http: httpx.Client, blob_server: BlobServer) -> None:
    data = os.urandom(10_000)
    assert http.put(f"{PREFIX}/{sha(data)}", content=data).status_code == 201
    path = blob_server.store.path_for(sha(data))
    assert path is not None
    path.unlink()  # an operator's mistake, a lost disk
    for resp in (http.get(f"{PREFIX}/{sha(data)}"), http.head(f"{PREFIX}/{sha(data)}")):
        assert resp.status_code == 404
    assert "not found" in http.get(f"{PREFIX}/{sha(data)}").json()["detail"]
    assert consistent(blob_server.store) == []
    assert http.put(f"{PREFIX}/{sha(data)}", content=data).status_code == 201  # heals
    assert http.get(f"{PREFIX}/{sha(data)}").content == data


def test_two_sessions_finishing_the_same_blob_at_once(
    http: httpx.Client, blob_server: BlobServer
) -> None:
    data = os.urandom(2_000_000)
    locations = [http.post(f"{PREFIX}/uploads").headers["location"] for _ in range(3)]
    results: list[int] = []

    def upload(loc: str) -> None:
        with httpx.Client(base_url=blob_server.url, timeout=30) as client:
            client.patch(loc, content=data[:1_000_000])
            results.append(
                client.put(loc, params={"digest": sha(data)}, content=data[1_000_000:]).status_code
            )

    threads = [threading.Thread(target=upload, args=(loc,)) for loc in locations]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [201, 201, 201]
    assert consistent(blob_server.store) == [sha(data)]
    assert list((blob_server.store.root / "uploads").iterdir()) == []
