"""Real servers on 127.0.0.1 for registry tests.

A uvicorn serving only the blob router over a store, and a ``moto_server`` subprocess
(a real S3 HTTP implementation) for the S3 blob store.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI

from farm.api.auth import Authenticator
from farm.api.routers import blobs
from farm.db.tokens import TokenDb
from farm.registry.store.filesystem import FilesystemBlobStore
from farm.settings import Settings
from tests.farmtest import free_port, served


def make_blob_app(store: Any, max_blob_bytes: int | None = None) -> FastAPI:
    """The smallest app that mounts the blob router the way the real API does."""
    app = FastAPI()
    app.state.blobstore = store
    # Auth off: these tests are about the blob protocol (tests/unit/api/test_auth.py and
    # tests/integration/api/test_trust.py cover the tokens).
    app.state.auth = Authenticator(cast(TokenDb, None), Settings(auth=False))
    if max_blob_bytes is not None:
        app.state.settings = SimpleNamespace(max_blob_bytes=max_blob_bytes)
    app.include_router(blobs.router)
    return app


@dataclass
class BlobServer:
    url: str
    store: FilesystemBlobStore


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Run ``app`` on a free 127.0.0.1 port in a thread; yields its base URL."""
    port = free_port()
    with served(app, port, lifespan="off"):
        yield f"http://127.0.0.1:{port}"


ServeFactory = Callable[[FastAPI], str]
AppFactory = Callable[[FilesystemBlobStore, "int | None"], FastAPI]


@pytest.fixture
def blob_app() -> AppFactory:
    """``make_blob_app`` as a fixture, so test modules never import this conftest."""
    return make_blob_app


@pytest.fixture
def serve_app() -> Iterator[ServeFactory]:
    """Start any number of apps for one test; all are stopped after it."""
    with ExitStack() as stack:
        yield lambda app: stack.enter_context(serve(app))


@pytest.fixture
def blob_server(tmp_path: Path, serve_app: ServeFactory) -> BlobServer:
    """The blob router over a store under tmp_path, with a 64 MiB blob limit."""
    store = FilesystemBlobStore(tmp_path / "registry")
    url = serve_app(make_blob_app(store, max_blob_bytes=64 * 1024 * 1024))
    return BlobServer(url, store)


@dataclass
class S3Server:
    """A real S3-compatible HTTP server (moto_server) on 127.0.0.1, ours by PID."""

    url: str
    pid: int

    def client(self) -> Any:
        """A boto3 S3 client pointed at this server (any credentials are accepted)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="farm-test",
            aws_secret_access_key="farm-test-secret",
        )


@pytest.fixture
def http(blob_server: BlobServer) -> Iterator[httpx.Client]:
    """A client of the per-test blob server."""
    with httpx.Client(base_url=blob_server.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """``moto_server`` as a subprocess on a free loopback port; stopped by its PID."""
    binary = Path(sys.executable).parent / "moto_server"
    if not binary.exists():
        found = shutil.which("moto_server")
        if found is None:
            pytest.fail("moto_server is missing: pip install -e '.[dev]' (moto[server])")
        binary = Path(found)
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(binary), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"},
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + "/moto-api/", timeout=1).status_code < 500:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"moto_server did not start: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.1)
    try:
        yield S3Server(url, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
