"""RegistryClient against a real uvicorn: round trips, dedupe, retries, resumes, errors."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

from farm.api.routers.blobs import blob_response
from farm.errors import BlobNotFound, CorruptBlob, DigestMismatch, ServiceUnavailable, UploadError
from farm.registry.client import RegistryClient

if TYPE_CHECKING:  # fixtures come from conftest; never import it at run time
    from conftest import BlobServer, ServeFactory

PREFIX = "/api/v1/blobs"


def sha(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


@pytest.fixture
def client(blob_server: BlobServer) -> Iterator[RegistryClient]:
    with RegistryClient(blob_server.url, timeout=30, attempts=3, backoff=0.01) as c:
        yield c


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_upload_download_round_trip_and_dedupe(
    client: RegistryClient, blob_server: BlobServer, tmp_path: Path
) -> None:
    data = os.urandom(2_500_000)
    src = write(tmp_path / "artifact.tgz", data)
    info = client.upload_file(src)
    assert info.digest == sha(data) and info.size == len(data)
    assert client.exists(info.digest)
    stored = blob_server.store.path_for(info.digest)
    assert stored is not None
    inode = stored.stat().st_ino
    assert client.upload_file(src) == info  # HEAD said present: no second PUT
    assert stored.stat().st_ino == inode

    dest = tmp_path / "down" / "artifact.tgz"
    dest.parent.mkdir()
    assert client.download_to(info.digest, dest) == info
    assert dest.read_bytes() == data
    assert [p.name for p in dest.parent.iterdir()] == ["artifact.tgz"]  # no .part left


def test_resumable_upload(client: RegistryClient, tmp_path: Path) -> None:
    data = os.urandom(300_001)
    info = client.upload_resumable(write(tmp_path / "big", data), chunk_size=64 * 1024)
    assert info.digest == sha(data)
    client.download_to(info.digest, tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == data
    empty = client.upload_resumable(write(tmp_path / "empty", b""))
    assert empty.size == 0 and client.exists(empty.digest)


def test_4xx_raise_the_servers_error(client: RegistryClient, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(BlobNotFound, match="not found"):
        client.download_to(sha(b"missing"), out / "x")
    assert list(out.iterdir()) == []
    with pytest.raises(UploadError, match="invalid digest"):
        client.exists("sha256:short")


def test_corrupted_blob_is_not_downloaded_and_is_replaced_on_upload(
    client: RegistryClient, blob_server: BlobServer, tmp_path: Path
) -> None:
    data = os.urandom(100_000)
    src = write(tmp_path / "src", data)
    info = client.upload_file(src)
    stored = blob_server.store.path_for(info.digest)
    assert stored is not None
    stored.write_bytes(b"rot" + data[3:])
    with pytest.raises(CorruptBlob):
        client.download_to(info.digest, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
    assert not client.exists(info.digest)
    client.upload_file(src)  # HEAD reports it unusable, so the client re-uploads
    client.download_to(info.digest, tmp_path / "dest")
    assert (tmp_path / "dest").read_bytes() == data


def test_unreachable_api_is_service_unavailable(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        url = f"http://127.0.0.1:{port}"
        with RegistryClient(url, attempts=3, backoff=0.01) as c:
            with pytest.raises(ServiceUnavailable, match=f"cannot reach the farm API at {url}"):
                c.exists(sha(b"x"))
            with pytest.raises(ServiceUnavailable):
                c.upload_file(write(tmp_path / "f", b"data"))


def test_5xx_are_retried_then_succeed(
    blob_server: BlobServer, serve_app: ServeFactory, tmp_path: Path
) -> None:
    """A proxy app that fails twice with 503, then serves the real store."""
    calls: list[str] = []
    app = FastAPI()

    @app.api_route(f"{PREFIX}/{{digest}}", methods=["GET", "HEAD"])
    def flaky(digest: str, request: Request) -> Response:
        calls.append(request.method)
        if len(calls) <= 2:
            return Response(status_code=503)
        return blob_response(blob_server.store, digest, request)

    info = blob_server.store.put_stream([b"payload"])
    with RegistryClient(serve_app(app), attempts=5, backoff=0.01) as c:
        assert c.exists(info.digest)
    assert calls == ["HEAD", "HEAD", "HEAD"]
    calls.clear()
    flaky_client = RegistryClient(serve_app(app), attempts=2, backoff=0.01)
    with flaky_client as c, pytest.raises(ServiceUnavailable):
        c.exists(info.digest)  # bounded: two attempts, both 503


def test_download_resumes_with_range_after_a_drop(
    blob_server: BlobServer, serve_app: ServeFactory, tmp_path: Path
) -> None:
    data = os.urandom(3 * 1024 * 1024)
    info = blob_server.store.put_stream([data])
    ranges: list[str | None] = []
    app = FastAPI()

    @app.get(f"{PREFIX}/{{digest}}")
    def dropping(digest: str, request: Request) -> Response:
        ranges.append(request.headers.get("range"))
        if len(ranges) == 1:  # first attempt: half the body, then the connection dies

            def half() -> Iterator[bytes]:
                yield data[: len(data) // 2]
                raise ConnectionResetError("simulated drop")

            headers = {"Content-Length": str(len(data))}
            return StreamingResponse(half(), headers=headers)
        return blob_response(blob_server.store, digest, request)

    with RegistryClient(serve_app(app), attempts=3, backoff=0.01) as c:
        c.download_to(info.digest, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == data
    assert ranges[0] is None and ranges[1] is not None and ranges[1].startswith("bytes=")
    assert ranges[1] != "bytes=0-"


def test_download_of_lying_server_is_a_digest_mismatch(
    serve_app: ServeFactory, tmp_path: Path
) -> None:
    app = FastAPI()

    @app.get(f"{PREFIX}/{{digest}}")
    def liar(digest: str) -> Response:
        return Response(b"not the promised bytes", media_type="application/octet-stream")

    with RegistryClient(serve_app(app), attempts=1) as c, pytest.raises(DigestMismatch):
        c.download_to(sha(b"promised"), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
