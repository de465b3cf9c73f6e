"""The blob data plane against real sockets: a BlobDataServer on 127.0.0.1 over a real
filesystem store, driven by the real clients (DirectBlobClient, RegistryClient)."""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import h11
import httpx
import pytest

from farm.api.routers import registry
from farm.errors import BlobNotFound, CorruptBlob, DigestMismatch, RegistryError, UploadError
from farm.registry.client import RegistryClient
from farm.registry.store import filesystem as blobstore
from farm.registry.store.digests import BlobInfo, digest_hex, hash_file
from farm.registry.store.filesystem import FilesystemBlobStore
from farm.registry.transfer import client as direct_module
from farm.registry.transfer import server as dataplane
from farm.registry.transfer.client import DirectBlobClient, Download, TransferError
from farm.registry.transfer.server import HOLD_BACK, BlobDataServer
from tests.farmtest import at_once

LIMIT = 64 * 1024 * 1024


@pytest.fixture
def store(tmp_path: Path) -> FilesystemBlobStore:
    return FilesystemBlobStore(tmp_path / "registry")


@pytest.fixture
def data_plane(store: FilesystemBlobStore) -> Iterator[BlobDataServer]:
    server = BlobDataServer(store, "127.0.0.1", 0, max_blob_bytes=LIMIT).start()
    yield server
    server.stop()


@pytest.fixture
def direct(data_plane: BlobDataServer) -> DirectBlobClient:
    return DirectBlobClient(data_plane.url_for("127.0.0.1"), timeout=30)


def blob_file(path: Path, size: int) -> BlobInfo:
    path.write_bytes(os.urandom(size))
    return hash_file(path)


def fetch(direct: DirectBlobClient, digest: str, dest: Path) -> tuple[bytes, str]:
    """One GET attempt into ``dest``: the bytes and the sha256 the client computed."""
    fd = os.open(dest, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    try:
        download = Download(fd)
        try:
            direct.get_into(digest, download)
        finally:
            got = f"sha256:{download.hasher.finish()}"
    finally:
        os.close(fd)
    return dest.read_bytes(), got


@pytest.mark.parametrize("size", [0, 1, 300_000, 20 * 1024 * 1024 + 17])
def test_round_trip_keeps_every_byte(
    tmp_path: Path, store: FilesystemBlobStore, direct: DirectBlobClient, size: int
) -> None:
    info = blob_file(tmp_path / "in.bin", size)
    direct.put_file(tmp_path / "in.bin", info)
    assert store.stat(info.digest).size == size
    assert store.checksums.read(digest_hex(info.digest)) is not None  # recorded at commit
    data, got = fetch(direct, info.digest, tmp_path / "out.bin")
    assert got == info.digest
    assert data == (tmp_path / "in.bin").read_bytes()
    assert list((store.root / "tmp").iterdir()) == []


def test_wrong_digest_stores_nothing(
    tmp_path: Path, store: FilesystemBlobStore, direct: DirectBlobClient
) -> None:
    info = blob_file(tmp_path / "in.bin", 100_000)
    claimed = BlobInfo("sha256:" + "ab" * 32, info.size)
    with pytest.raises(DigestMismatch, match="not sha256:abab"):
        direct.put_file(tmp_path / "in.bin", claimed)
    assert not store.has(claimed.digest) and not store.has(info.digest)
    assert list((store.root / "tmp").iterdir()) == []


def test_over_the_limit_is_refused_before_the_body(
    tmp_path: Path, store: FilesystemBlobStore
) -> None:
    small = BlobDataServer(store, "127.0.0.1", 0, max_blob_bytes=1000).start()
    try:
        client = DirectBlobClient(small.url_for("127.0.0.1"), timeout=30)
        info = blob_file(tmp_path / "in.bin", 5000)
        with pytest.raises(UploadError, match="over the limit of 1000") as caught:
            client.put_file(tmp_path / "in.bin", info)
        assert caught.value.http_status == 413
        assert not store.has(info.digest)
    finally:
        small.stop()


def test_missing_blob_is_404(tmp_path: Path, direct: DirectBlobClient) -> None:
    with pytest.raises(BlobNotFound):
        fetch(direct, "sha256:" + "0" * 64, tmp_path / "out.bin")


def test_ranged_get(tmp_path: Path, store: FilesystemBlobStore, direct: DirectBlobClient) -> None:
    data = os.urandom(4 * 1024 * 1024)
    info = store.put_stream([data])
    fd = os.open(tmp_path / "out.bin", os.O_RDWR | os.O_CREAT)
    try:
        os.pwrite(fd, data[:1000], 0)
        download = Download(fd)
        download.landed(1000)  # as if an earlier attempt stopped here
        direct.get_into(info.digest, download)
        assert download.hasher.finish() == digest_hex(info.digest)
    finally:
        os.close(fd)
    assert (tmp_path / "out.bin").read_bytes() == data


def raw_request(server: BlobDataServer, method: str, target: str) -> h11.Response:
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        conn = h11.Connection(h11.CLIENT)
        request = h11.Request(method=method, target=target, headers=[("Host", "x")])
        sock.sendall(conn.send(request) + (conn.send(h11.EndOfMessage()) or b""))
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(sock.recv(65536))
            elif isinstance(event, h11.Response):
                return event


def test_other_paths_and_methods_are_refused(data_plane: BlobDataServer) -> None:
    assert raw_request(data_plane, "GET", "/api/v1/builds").status_code == 404
    assert raw_request(data_plane, "DELETE", "/api/v1/blobs/sha256:" + "1" * 64).status_code == 405
    assert raw_request(data_plane, "GET", "/api/v1/blobs/sha256:XYZ").status_code == 404


def test_corrupted_blob_is_never_delivered_whole(
    tmp_path: Path,
    store: FilesystemBlobStore,
    direct: DirectBlobClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dataplane, "PREVERIFY_MAX_BYTES", 0)  # the streaming check, not the 500
    data = os.urandom(6 * 1024 * 1024)
    info = store.put_stream([data])
    blob = store.path_for(info.digest)
    assert blob is not None
    with open(blob, "r+b") as f:  # silent corruption in the middle of the file
        f.seek(3 * 1024 * 1024)
        f.write(b"\x00" * 16)
    fd = os.open(tmp_path / "out.bin", os.O_RDWR | os.O_CREAT)
    try:
        download = Download(fd)
        with pytest.raises(TransferError):
            direct.get_into(info.digest, download)
        download.hasher.finish()
        assert download.size == len(data) - HOLD_BACK  # the tail was withheld
    finally:
        os.close(fd)


def test_small_corrupted_blob_answers_500(
    tmp_path: Path, store: FilesystemBlobStore, direct: DirectBlobClient
) -> None:
    info = store.put_stream([b"x" * 5000])
    blob = store.path_for(info.digest)
    assert blob is not None
    blob.write_bytes(b"y" * 5000)
    with pytest.raises(Exception, match="corrupted"):
        fetch(direct, info.digest, tmp_path / "out.bin")


@pytest.fixture
def streamed(store: FilesystemBlobStore, monkeypatch: pytest.MonkeyPatch) -> tuple[bytes, str, str]:
    """A 3 MiB stored blob (bytes, digest, hex) whose GETs are checked while streaming."""
    monkeypatch.setattr(dataplane, "PREVERIFY_MAX_BYTES", 0)  # not the up-front check
    data = os.urandom(3 * 1024 * 1024)
    info = store.put_stream([data])
    return data, info.digest, digest_hex(info.digest)


@pytest.mark.parametrize("record", ["damaged", "missing"])
def test_a_bad_or_missing_checksum_record_is_settled_by_sha256(
    tmp_path: Path,
    store: FilesystemBlobStore,
    direct: DirectBlobClient,
    streamed: tuple[bytes, str, str],
    record: str,
) -> None:
    data, digest, hexdigest = streamed
    good = store.checksums.read(hexdigest)
    if record == "damaged":  # torn or rotted: must not be blamed on the blob
        store.checksums.write(hexdigest, "0" * 64)
    else:  # as in a store written before records existed
        store.checksums.drop(hexdigest)
    assert fetch(direct, digest, tmp_path / "out.bin") == (data, digest)
    assert store.checksums.read(hexdigest) == good  # written again by the sha256 check


def test_concurrent_uploads_of_one_blob(
    tmp_path: Path, store: FilesystemBlobStore, direct: DirectBlobClient
) -> None:
    info = blob_file(tmp_path / "in.bin", 8 * 1024 * 1024)
    assert at_once(lambda: direct.put_file(tmp_path / "in.bin", info), 4) == [None] * 4
    assert list(store.iter_digests()) == [info.digest]
    assert hash_file(store.path_for(info.digest)).digest == info.digest  # type: ignore[arg-type]
    assert list((store.root / "tmp").iterdir()) == []


def test_client_killed_mid_upload_leaves_no_blob(
    tmp_path: Path, store: FilesystemBlobStore, data_plane: BlobDataServer
) -> None:
    size = 48 * 1024 * 1024
    info = blob_file(tmp_path / "in.bin", size)
    # A client that declares the whole blob, sends half and stalls until killed.
    script = textwrap.dedent(
        f"""
        import socket, sys, time
        s = socket.create_connection(("127.0.0.1", {data_plane.port}))
        s.sendall(b"PUT /api/v1/blobs/{info.digest} HTTP/1.1\\r\\nHost: x\\r\\n"
                  b"Content-Length: {size}\\r\\n\\r\\n")
        with open({str(tmp_path / "in.bin")!r}, "rb") as f:
            s.sendall(f.read({size // 2}))
        print("sent", flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "sent"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    deadline = time.monotonic() + 10
    while list((store.root / "tmp").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list((store.root / "tmp").iterdir()) == []
    assert not store.has(info.digest)


def test_registry_client_discovers_the_data_plane_and_falls_back(
    tmp_path: Path,
    store: FilesystemBlobStore,
    data_plane: BlobDataServer,
    api_with_data_plane: tuple[str, SimpleNamespace],
) -> None:
    url, settings = api_with_data_plane
    endpoints = httpx.get(f"{url}/api/v1/registry/endpoints").json()
    assert endpoints["blob_data"] == f"http://127.0.0.1:{data_plane.port}"

    info = blob_file(tmp_path / "in.bin", 3 * 1024 * 1024 + 5)
    with RegistryClient(url) as client:
        client.upload_file(tmp_path / "in.bin")
        assert client._data_plane() is not None  # it went the fast way
        client.download_to(info.digest, tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == (tmp_path / "in.bin").read_bytes()

    # Advertise an address where nothing listens: the client moves bytes via the API.
    settings.blob_data_url = "http://127.0.0.1:9"
    store.delete(info.digest)
    with RegistryClient(url, attempts=2, backoff=0.01) as client:
        client.upload_file(tmp_path / "in.bin")
        assert client._data_plane() is None
        client.download_to(info.digest, tmp_path / "again.bin")
    assert hashlib.sha256((tmp_path / "again.bin").read_bytes()).hexdigest() == info.digest[7:]


@pytest.fixture
def api_with_data_plane(
    store: FilesystemBlobStore, data_plane: BlobDataServer, blob_app, serve_app
) -> tuple[str, SimpleNamespace]:
    """The blob routes on uvicorn plus the endpoints route advertising ``data_plane``."""
    app = blob_app(store, LIMIT)
    app.state.settings = SimpleNamespace(max_blob_bytes=LIMIT, blob_data_url=None)
    app.state.blob_data = data_plane
    app.include_router(registry.router)
    return serve_app(app), app.state.settings


def test_resuming_cannot_complete_a_corrupted_blob(
    tmp_path: Path,
    store: FilesystemBlobStore,
    api_with_data_plane: tuple[str, SimpleNamespace],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dataplane, "PREVERIFY_MAX_BYTES", 0)
    info = store.put_stream([os.urandom(6 * 1024 * 1024)])
    blob = store.path_for(info.digest)
    assert blob is not None
    with open(blob, "r+b") as f:
        f.seek(1024)
        f.write(b"\xff" * 8)
    url, _ = api_with_data_plane
    # The first GET is cut before its tail; the client's resume (Range to the end)
    # must be refused as corrupted rather than finish the blob.
    with RegistryClient(url, attempts=3, backoff=0.01) as client, pytest.raises(CorruptBlob):
        client.download_to(info.digest, tmp_path / "out.bin")
    assert not (tmp_path / "out.bin").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["registry"]  # no .part left


@pytest.fixture
def quick_give_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients wait 0.5 s, not 30, for a data plane's first answer."""
    monkeypatch.setattr(direct_module, "FIRST_ANSWER_TIMEOUT", 0.5)


def test_a_full_disk_is_a_507_and_not_retried(
    tmp_path: Path, store: FilesystemBlobStore, direct: DirectBlobClient, monkeypatch
) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(blobstore.os, "fsync", full)  # the server's fsync of the temp file
    info = blob_file(tmp_path / "in.bin", 200_000)
    with pytest.raises(RegistryError, match="No space left") as caught:
        direct.put_file(tmp_path / "in.bin", info)
    assert caught.value.http_status == 507
    monkeypatch.undo()
    assert not store.has(info.digest) and list((store.root / "tmp").iterdir()) == []


@pytest.mark.usefixtures("quick_give_up")
def test_a_data_plane_that_never_answers_is_given_up_for_the_api(
    tmp_path: Path, store: FilesystemBlobStore, api_with_data_plane: tuple[str, SimpleNamespace]
) -> None:
    import socket

    silent = socket.create_server(("127.0.0.1", 0))  # accepts (backlog), never answers
    try:
        url, settings = api_with_data_plane
        settings.blob_data_url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        info = blob_file(tmp_path / "in.bin", 100_000)
        with RegistryClient(url, attempts=2, backoff=0.01) as client:
            started = time.monotonic()
            client.upload_file(tmp_path / "in.bin")
            assert time.monotonic() - started < 20
            assert client._data_plane() is None
        assert store.has(info.digest)
    finally:
        silent.close()


def test_data_plane_on_ipv6_loopback(tmp_path: Path, store: FilesystemBlobStore) -> None:
    try:
        server = BlobDataServer(store, "::1", 0, max_blob_bytes=LIMIT).start()
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    try:
        client = DirectBlobClient(server.url_for("::1"), timeout=30)
        info = blob_file(tmp_path / "in.bin", 70_000)
        client.put_file(tmp_path / "in.bin", info)
        assert fetch(client, info.digest, tmp_path / "out.bin")[1] == info.digest
    finally:
        server.stop()
