"""Session fixtures: a real Redis, a real dockerd, a real API and real Celery workers.

Started once per session; every process is ours and is stopped by its PID.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.farmtest import BUSYBOX, Farm, Health, free_port, wait_for


@pytest.fixture(scope="session")
def docker_client() -> Iterator[object]:
    """A client of the real dockerd (the bootstrap script starts it)."""
    import docker

    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except Exception as exc:
        pytest.fail(f"dockerd is not reachable ({exc}); run scripts/bootstrap.sh first")
    try:
        client.images.get(BUSYBOX)
    except Exception:
        pytest.fail(f"image {BUSYBOX} is missing; run scripts/images.sh")
    yield client
    client.close()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server on a free loopback port."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed; run scripts/bootstrap.sh first")
    port = free_port()
    rdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(rdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    url = f"redis://127.0.0.1:{port}/0"
    wait_for(lambda: _ping(redis, url), 20, "redis-server")
    yield url
    proc.terminate()
    proc.wait(10)


def _ping(redis_mod: object, url: str) -> bool:
    try:
        return bool(redis_mod.Redis.from_url(url).ping())  # type: ignore[attr-defined]
    except Exception:
        return False


def farm_env(data_dir: Path, redis_url: str, port: int) -> dict[str, str]:
    """Environment of every farm process in a test farm."""
    return {
        **os.environ,
        "FARM_DATA_DIR": str(data_dir),
        "FARM_BROKER_URL": redis_url,
        "FARM_API_HOST": "127.0.0.1",
        "FARM_API_PORT": str(port),
        "FARM_API_URL": f"http://127.0.0.1:{port}",
        "FARM_BLOB_PORT": "0",  # the blob data plane on any free port (it is discovered)
        "FARM_JOB_LEASE_SECONDS": "8",
        "FARM_WATCHDOG_INTERVAL": "1",
        "FARM_REAP_INTERVAL": "3",
        "FARM_JOB_TIMEOUT": "600",
        "FARM_LOG_MAX_BYTES": "200000",
        "FARM_STUCK_AFTER": "2",  # stuck jobs (issue 10): marked soon, heartbeats often
        "FARM_WORKER_HEARTBEAT": "1",
    }


@pytest.fixture(scope="session")
def farm(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str, docker_client: object
) -> Iterator[Farm]:
    """A whole farm: the API/coordinator and two workers (two job slots each)."""
    data_dir = tmp_path_factory.mktemp("farm")
    port = free_port()
    f = Farm(
        url=f"http://127.0.0.1:{port}", env=farm_env(data_dir, redis_url, port), data_dir=data_dir
    )
    api = f.start("api", "api")
    wait_for(lambda: _healthy(f.url) or api.popen.poll() is not None, 60, "the farm API")
    assert api.popen.poll() is None, api.log.read_text()
    for i in (1, 2):
        name = f"w{i}-{port}@test"
        f.start(
            f"worker-{i}",
            "worker",
            "--concurrency",
            "2",
            "--name",
            name,
            extra_env={"FARM_WORKER_NAME": name},
        )
    wait_for(lambda: _workers_ready(f), 60, "celery workers")
    yield f
    for proc in reversed(f.procs):
        proc.stop()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _workers_ready(f: Farm) -> bool:
    return all(
        "ready" in p.log.read_text(errors="replace") for p in f.procs if p.name.startswith("worker")
    )


@pytest.fixture
def health() -> Iterator[Health]:
    """A health endpoint on 127.0.0.1 (``Health``): 500 for the scopes in ``sick``."""
    h = Health()
    yield h
    h.close()
