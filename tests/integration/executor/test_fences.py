"""The two fences against two attempts of one job at once, on the real dockerd (issue 16/4).

* the executor removes another attempt's containers of the same job (same farm) before
  it creates the new attempt's, and waits until dockerd no longer lists them;
* a job container whose worker stops renewing the lease file kills itself.

Every container made here carries a label unique to this session; cleanup removes only
those.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from farm.executor.base import ContainerJob, Limits, Mount
from farm.executor.docker import DockerExecutor
from farm.executor.reaper import LABEL_API, job_labels
from farm.worker.lease import LeaseKeeper
from farm.worker.scripts import write_scripts

pytestmark = pytest.mark.integration

IMAGE = "farm/busybox:latest"
SESSION_LABEL = "farm.test-session"
SESSION = uuid.uuid4().hex[:12]
API = f"http://fence-test-{SESSION}"
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def client(docker_client: docker.DockerClient) -> Iterator[docker.DockerClient]:
    yield docker_client
    for c in docker_client.containers.list(
        all=True, filters={"label": f"{SESSION_LABEL}={SESSION}"}
    ):
        c.remove(force=True)


def labels(job: str, attempt: int, api: str = API) -> dict[str, str]:
    return {**job_labels("7", job, attempt, f"w-{SESSION}"), LABEL_API: api, SESSION_LABEL: SESSION}


def orphan(client: docker.DockerClient, job: str, attempt: int, api: str = API) -> str:
    """A running container of ``attempt``, as a SIGKILLed worker leaves it."""
    container: Any = client.containers.run(
        IMAGE, ["sleep", "300"], labels=labels(job, attempt, api), network_mode="none",
        init=True, detach=True,
    )  # fmt: skip
    return str(container.id)


def exists(client: docker.DockerClient, cid: str) -> bool:
    try:
        client.api.inspect_container(cid)
    except docker.errors.NotFound:
        return False
    return True


def container_job(job: str, attempt: int, command: tuple[str, ...], **kw: Any) -> ContainerJob:
    fields: dict[str, Any] = {
        "image": IMAGE,
        "command": command,
        "entrypoint": None,
        "env": {},
        "mounts": (),
        "workdir": "/",
        "labels": labels(job, attempt),
        "timeout": 60.0,
        "limits": Limits(memory_bytes=128 * MiB, nano_cpus=500_000_000, pids=64),
    }
    return ContainerJob(**{**fields, **kw})


def test_the_next_attempt_starts_only_once_the_old_ones_are_gone(
    client: docker.DockerClient,
) -> None:
    job = uuid.uuid4().hex[:8]
    old = orphan(client, job, 1)
    older_stopped = orphan(client, job, 1)
    client.api.kill(older_stopped)
    elsewhere = orphan(client, job, 1, api=f"http://another-farm-{SESSION}")
    other_job = orphan(client, uuid.uuid4().hex[:8], 1)
    executor = DockerExecutor(client=client, poll_interval=0.1)
    seen_at_create: list[bool] = []
    executor.on_created = lambda role, cid: seen_at_create.append(
        exists(client, old) or exists(client, older_stopped)
    )
    out: list[bytes] = []
    result = executor.run(container_job(job, 2, ("echo", "attempt 2")), out.append, lambda: False)
    assert (result.exit_code, result.reason) == (0, None), result
    assert b"".join(out).strip() == b"attempt 2"
    assert seen_at_create == [False]  # attempt 1 was gone before attempt 2 was created
    assert not exists(client, old) and not exists(client, older_stopped)
    # another farm's container of a job with the same id, and other jobs, are left alone
    assert exists(client, elsewhere) and exists(client, other_job)


def test_a_job_whose_worker_stops_renewing_its_lease_kills_itself(
    client: docker.DockerClient, tmp_path: Path
) -> None:
    job = uuid.uuid4().hex[:8]
    farm_dir, workspace = tmp_path / "farm", tmp_path / "ws"
    workspace.mkdir()
    write_scripts(farm_dir, [], ["echo started", "sleep 120", "echo never"], [], lease_seconds=3)
    spec = container_job(
        job, 1, ("sh", "/farm/run.sh"),
        env={"CI_PROJECT_DIR": "/ws"},
        mounts=(Mount(str(workspace), "/ws"), Mount(str(farm_dir), "/farm", read_only=True)),
    )  # fmt: skip
    executor = DockerExecutor(client=client, poll_interval=0.1)
    out: list[bytes] = []
    results: list[Any] = []
    keeper = LeaseKeeper(farm_dir / "lease", every=0.5)
    keeper.__enter__()
    runner = threading.Thread(
        target=lambda: results.append(executor.run(spec, out.append, lambda: False))
    )
    runner.start()
    time.sleep(5)  # longer than the lease: a renewed lease keeps the job alive
    assert runner.is_alive() and b"started" in b"".join(out)
    keeper.__exit__(None, None, None)  # the worker "dies": nobody renews the lease
    last_renewal = (farm_dir / "lease").stat().st_mtime
    runner.join(30)
    assert not runner.is_alive()
    (result,) = results
    assert result.exit_code == 137 and b"never" not in b"".join(out)
    assert b"stopped renewing the job lease" in b"".join(out)
    # lease 3 s; checked every second on whole-second mtimes: dead within 3 + 2 s
    assert result.finished_at - last_renewal < 3 + 2 + 1.5, result.finished_at - last_renewal
