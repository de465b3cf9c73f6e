"""A real uvicorn on 127.0.0.1 serving only the blob router over a FilesystemBlobStore."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import uvicorn
from fastapi import FastAPI

from farm.api.routers import blobs
from farm.registry.blobstore import FilesystemBlobStore


def make_blob_app(store: FilesystemBlobStore, max_blob_bytes: int | None = None) -> FastAPI:
    """The smallest app that mounts the blob router the way the real API does."""
    app = FastAPI()
    app.state.blobstore = store
    if max_blob_bytes is not None:
        app.state.settings = SimpleNamespace(max_blob_bytes=max_blob_bytes)
    app.include_router(blobs.router)
    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class BlobServer:
    url: str
    store: FilesystemBlobStore


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Run ``app`` on a free 127.0.0.1 port in a thread; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


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
