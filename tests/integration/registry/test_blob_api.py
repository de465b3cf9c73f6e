"""The blob HTTP API against a real uvicorn on 127.0.0.1 (no mocks)."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from farm.registry.store.filesystem import FilesystemBlobStore

if TYPE_CHECKING:  # fixtures come from conftest; never import it at run time
    from conftest import AppFactory, BlobServer, ServeFactory

PREFIX = "/api/v1/blobs"


def sha(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def blob_files(store: FilesystemBlobStore) -> list[Path]:
    return [p for p in (store.root / "blobs").rglob("*") if p.is_file()]


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_put_head_get_with_headers(http: httpx.Client, blob_server: BlobServer) -> None:
    data = os.urandom(300_000)
    digest = sha(data)
    created = http.put(f"{PREFIX}/{digest}", content=data)
    assert created.status_code == 201, created.text
    assert created.headers["docker-content-digest"] == digest
    assert created.json() == {"digest": digest, "size": len(data)}
    assert http.put(f"{PREFIX}/{digest}", content=data).status_code == 200  # already there

    head = http.head(f"{PREFIX}/{digest}")
    assert head.status_code == 200 and head.content == b""
    for response in (head, http.get(f"{PREFIX}/{digest}")):
        assert response.headers["content-length"] == str(len(data))
        assert response.headers["etag"] == f'"{digest}"'
        assert response.headers["docker-content-digest"] == digest
        assert response.headers["accept-ranges"] == "bytes"
        assert response.headers["content-type"] == "application/octet-stream"
    assert http.get(f"{PREFIX}/{digest}").content == data
    assert len(blob_files(blob_server.store)) == 1


def test_missing_and_malformed_digests(http: httpx.Client) -> None:
    missing = http.get(f"{PREFIX}/{sha(b'nothing')}")
    assert missing.status_code == 404 and "not found" in missing.json()["detail"]
    assert missing.headers["x-farm-error"] == "BlobNotFound"
    assert http.head(f"{PREFIX}/{sha(b'nothing')}").status_code == 404
    bad = http.get(f"{PREFIX}/sha256:xyz")
    assert bad.status_code == 400 and "invalid digest" in bad.json()["detail"]
    assert http.put(f"{PREFIX}/md5:abc", content=b"x").status_code == 400


def test_ranges(http: httpx.Client) -> None:
    data = bytes(range(100))
    digest = sha(data)
    http.put(f"{PREFIX}/{digest}", content=data)
    cases = {"bytes=10-19": (10, 19), "bytes=90-": (90, 99), "bytes=-5": (95, 99)}
    cases["bytes=95-1000"] = (95, 99)
    for header, (start, end) in cases.items():
        r = http.get(f"{PREFIX}/{digest}", headers={"Range": header})
        assert r.status_code == 206, header
        assert r.content == data[start : end + 1]
        assert r.headers["content-range"] == f"bytes {start}-{end}/100"
        assert r.headers["content-length"] == str(end - start + 1)
    for header in ("bytes=100-", "bytes=20-10", "bytes=-0", "pages=1-2", "bytes=1-2,4-5"):
        r = http.get(f"{PREFIX}/{digest}", headers={"Range": header})
        assert r.status_code == 416, header
        assert r.headers["content-range"] == "bytes */100"


def test_put_mismatch_stores_nothing(http: httpx.Client, blob_server: BlobServer) -> None:
    r = http.put(f"{PREFIX}/{sha(b'promised')}", content=b"delivered")
    assert r.status_code == 400 and r.headers["x-farm-error"] == "DigestMismatch"
    assert sha(b"delivered") in r.json()["detail"]
    assert blob_files(blob_server.store) == []
    assert list((blob_server.store.root / "tmp").iterdir()) == []
    assert http.head(f"{PREFIX}/{sha(b'delivered')}").status_code == 404


def test_size_limit(tmp_path: Path, serve_app: ServeFactory, blob_app: AppFactory) -> None:
    store = FilesystemBlobStore(tmp_path / "small")
    url = serve_app(blob_app(store, 1000))
    data = b"x" * 1001
    with httpx.Client(base_url=url) as http:
        declared = http.put(f"{PREFIX}/{sha(data)}", content=data)
        assert declared.status_code == 413
        chunked = http.put(f"{PREFIX}/{sha(data)}", content=iter([data[:600], data[600:]]))
        assert chunked.status_code == 413  # no Content-Length: the store counts
        assert http.put(f"{PREFIX}/{sha(data[:1000])}", content=data[:1000]).status_code == 201
    assert len(blob_files(store)) == 1


def test_resumable_upload_with_wrong_offset(http: httpx.Client) -> None:
    data = os.urandom(50_000)
    start = http.post(f"{PREFIX}/uploads")
    assert start.status_code == 202
    location = start.headers["location"]
    assert location.startswith(f"{PREFIX}/uploads/")
    assert start.headers["range"] == "0-0" and start.headers["upload-offset"] == "0"

    r = http.patch(location, content=data[:20_000], headers={"Content-Range": "0-19999"})
    assert r.status_code == 202 and r.headers["upload-offset"] == "20000"
    assert r.headers["range"] == "0-19999"
    wrong = http.patch(location, content=data[10_000:], headers={"Upload-Offset": "10000"})
    assert wrong.status_code == 416
    assert "expected offset 20000" in wrong.json()["detail"]
    assert wrong.headers["upload-offset"] == "20000"
    status = http.get(location)
    assert status.status_code == 204 and status.headers["upload-offset"] == "20000"
    r = http.patch(location, content=data[20_000:40_000], headers={"Upload-Offset": "20000"})
    assert r.headers["upload-offset"] == "40000"
    done = http.put(location, params={"digest": sha(data)}, content=data[40_000:])
    assert done.status_code == 201, done.text
    assert done.headers["location"] == f"{PREFIX}/{sha(data)}"
    assert http.get(done.headers["location"]).content == data
    assert http.get(location).status_code == 404  # the session is over


def test_abort_and_bad_finish(http: httpx.Client, blob_server: BlobServer) -> None:
    location = http.post(f"{PREFIX}/uploads").headers["location"]
    http.patch(location, content=b"abc")
    bad = http.put(location, params={"digest": sha(b"xyz")})
    assert bad.status_code == 400 and bad.headers["x-farm-error"] == "DigestMismatch"
    location = http.post(f"{PREFIX}/uploads").headers["location"]
    assert http.delete(location).status_code == 204
    assert http.delete(location).status_code == 404
    assert http.patch(f"{PREFIX}/uploads/not-a-uuid", content=b"x").status_code == 404
    assert blob_files(blob_server.store) == []


def _raw_request(port: int, head: str, body_part: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(head.encode() + body_part)
    return sock


def test_resume_after_dropped_connection(http: httpx.Client, blob_server: BlobServer) -> None:
    data = os.urandom(200_000)
    location = http.post(f"{PREFIX}/uploads").headers["location"]
    port = int(blob_server.url.rsplit(":", 1)[1])
    head = (
        f"PATCH {location} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Upload-Offset: 0\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    sock = _raw_request(port, head, data[:80_000])
    wait_for(lambda: int(http.get(location).headers["upload-offset"]) == 80_000)
    sock.close()  # the connection drops with 120 000 bytes never sent
    time.sleep(0.2)
    offset = int(http.get(location).headers["upload-offset"])
    assert offset == 80_000
    r = http.patch(location, content=data[offset:], headers={"Upload-Offset": str(offset)})
    assert r.status_code == 202
    assert http.put(location, params={"digest": sha(data)}).status_code == 201
    assert http.get(f"{PREFIX}/{sha(data)}").content == data


def test_concurrent_uploads_of_the_same_blob(blob_server: BlobServer) -> None:
    data = os.urandom(4 * 1024 * 1024)
    digest = sha(data)
    statuses: list[int] = []
    barrier = threading.Barrier(4)

    def upload() -> None:
        with httpx.Client(base_url=blob_server.url, timeout=60) as client:
            barrier.wait()
            chunks = (data[i : i + 65536] for i in range(0, len(data), 65536))
            statuses.append(client.put(f"{PREFIX}/{digest}", content=chunks).status_code)

    threads = [threading.Thread(target=upload) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses)[-1] == 201 and set(statuses) <= {200, 201}, statuses
    assert len(blob_files(blob_server.store)) == 1
    with httpx.Client(base_url=blob_server.url) as client:
        assert client.get(f"{PREFIX}/{digest}").content == data
    assert list((blob_server.store.root / "tmp").iterdir()) == []


_KILLED_CLIENT = """
import socket, sys, time
port, path, method = sys.argv[1:4]
total, half = int(sys.argv[4]), int(sys.argv[5])
sock = socket.create_connection(("127.0.0.1", int(port)))
sock.sendall(f"{method} {path} HTTP/1.1\\r\\nHost: x\\r\\nUpload-Offset: 0\\r\\n"
             f"Content-Length: {total}\\r\\n\\r\\n".encode() + b"k" * half)
print("sent", flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("mode", ["put", "session"])
def test_client_killed_mid_upload_leaves_no_blob(
    http: httpx.Client, blob_server: BlobServer, mode: str
) -> None:
    store = blob_server.store
    total, half = 2_000_000, 1_000_000
    digest = sha(b"k" * total)
    if mode == "put":
        method, path = "PUT", f"{PREFIX}/{digest}"
    else:
        method, path = "PATCH", http.post(f"{PREFIX}/uploads").headers["location"]
    port = blob_server.url.rsplit(":", 1)[1]
    args = [port, path, method, str(total), str(half)]
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_CLIENT, *args], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "sent"
        if mode == "put":
            wait_for(lambda: any(p.stat().st_size > 0 for p in (store.root / "tmp").iterdir()))
        else:
            wait_for(lambda: int(http.get(path).headers["upload-offset"]) > 0)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert http.head(f"{PREFIX}/{digest}").status_code == 404
    assert blob_files(store) == [] and list(store.iter_digests()) == []
    if mode == "put":  # the server noticed the disconnect and dropped its temp file
        wait_for(lambda: list((store.root / "tmp").iterdir()) == [])
    else:  # only the session holds the bytes that arrived, ready to resume
        offset = int(http.get(path).headers["upload-offset"])
        assert 0 < offset <= half
        assert list((store.root / "uploads").iterdir()) != []


def test_corrupted_blob_is_reported_never_served(
    http: httpx.Client, blob_server: BlobServer
) -> None:
    data = os.urandom(3 * 1024 * 1024)
    digest = sha(data)
    assert http.put(f"{PREFIX}/{digest}", content=data).status_code == 201
    assert http.get(f"{PREFIX}/{digest}").content == data
    path = blob_server.store.path_for(digest)
    assert path is not None
    with open(path, "r+b") as f:
        f.seek(len(data) // 2)
        f.write(b"\x00" * 16)
    for method in ("GET", "HEAD"):
        r = http.request(method, f"{PREFIX}/{digest}")
        assert r.status_code == 500, method
        assert r.headers["x-farm-error"] == "CorruptBlob"
    r = http.get(f"{PREFIX}/{digest}")
    assert digest in r.json()["detail"] and "corrupt" in r.json()["detail"]
    assert data[:100] not in r.content
    # Uploading the right bytes again replaces the corrupted copy.
    assert http.put(f"{PREFIX}/{digest}", content=data).status_code == 200
    assert http.get(f"{PREFIX}/{digest}").content == data


def test_large_blobs_stream_through_the_read_ahead_and_corruption_is_cut(
    http: httpx.Client, blob_server: BlobServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from farm.api.routers import blobs

    # Every GET now takes the large-blob path: no pre-verification, hash while sending.
    monkeypatch.setattr(blobs, "PREVERIFY_MAX_BYTES", 0)
    data = os.urandom(9 * 1024 * 1024 + 123)  # several 4 MiB read chunks and PUT batches
    digest = sha(data)
    assert http.put(f"{PREFIX}/{digest}", content=data).status_code == 201
    assert http.get(f"{PREFIX}/{digest}").content == data
    ranged = http.get(f"{PREFIX}/{digest}", headers={"Range": "bytes=5000000-5000099"})
    assert ranged.status_code == 206 and ranged.content == data[5_000_000:5_000_100]
    path = blob_server.store.path_for(digest)
    assert path is not None
    with open(path, "r+b") as f:
        f.seek(len(data) - 10)  # in the last chunk, the one that is held back
        f.write(b"\x00" * 4)
    received = bytearray()
    with pytest.raises(httpx.HTTPError), http.stream("GET", f"{PREFIX}/{digest}") as stream:
        for chunk in stream.iter_raw():
            received += chunk
    assert len(received) < len(data)  # never served whole


def test_put_stopped_early_by_the_store_does_not_hang_the_server(
    tmp_path: Path, serve_app: ServeFactory, blob_app: AppFactory
) -> None:
    # The store gives up (413) while the body is still arriving, several read-ahead
    # batches in: the receiving thread is stopped and the server keeps answering.
    store = FilesystemBlobStore(tmp_path / "limited")
    url = serve_app(blob_app(store, 3 * 1024 * 1024))
    piece = os.urandom(256 * 1024)
    body = [piece] * 64  # 16 MiB, no Content-Length
    with httpx.Client(base_url=url, timeout=30) as http:
        for _ in range(3):
            try:
                r = http.put(f"{PREFIX}/{sha(b''.join(body))}", content=iter(body))
                assert r.status_code == 413
            except httpx.TransportError:
                pass  # the server may answer and close before reading the rest
        ok = os.urandom(1024)
        assert http.put(f"{PREFIX}/{sha(ok)}", content=ok).status_code == 201
    assert list((store.root / "tmp").iterdir()) == []
