"""reap() against the real dockerd: removes exactly the containers keep() rejects.

All containers here carry a per-session label and worker name; keep() protects
everything that is not this session's, so other users of the daemon are safe.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import docker
import docker.errors
import pytest

from farm.executor.reaper import LABEL_JOB, job_labels, reap

pytestmark = pytest.mark.integration

IMAGE = "farm/busybox:latest"
SESSION_LABEL = "farm.test-session"
SESSION = uuid.uuid4().hex[:12]
WORKER = f"reaper-test-{SESSION}"


@pytest.fixture(scope="module")
def client(docker_client: docker.DockerClient) -> Iterator[docker.DockerClient]:
    """The session's dockerd client; this module's leftovers are removed after it."""
    yield docker_client
    for container in docker_client.containers.list(
        all=True, filters={"label": f"{SESSION_LABEL}={SESSION}"}
    ):
        container.remove(force=True)


def _container(client: docker.DockerClient, job: str, start: bool = True) -> str:
    labels = {**job_labels("b", job, 1, WORKER), SESSION_LABEL: SESSION}
    container: Any = client.containers.create(
        IMAGE, ["sleep", "300"], labels=labels, network_mode="none", init=True
    )
    if start:
        container.start()
    return str(container.id)


def _exists(client: docker.DockerClient, cid: str) -> bool:
    try:
        client.api.inspect_container(cid)
    except docker.errors.NotFound:
        return False
    return True


def _only_ours(keep_jobs: set[str]) -> Any:
    def keep(labels: dict[str, str]) -> bool:
        if labels.get(SESSION_LABEL) != SESSION:
            return True  # never anyone else's
        return labels[LABEL_JOB] in keep_jobs

    return keep


def test_reap_removes_only_rejected(client: docker.DockerClient) -> None:
    running = _container(client, "orphan-running")
    created = _container(client, "orphan-created", start=False)
    kept = _container(client, "alive")
    removed = reap(client, _only_ours({"alive"}), worker=WORKER)
    assert sorted(removed) == sorted([running, created])
    assert not _exists(client, running) and not _exists(client, created)
    assert _exists(client, kept)
    # A second pass finds nothing more to do.
    assert reap(client, _only_ours({"alive"}), worker=WORKER) == []
    client.api.remove_container(kept, force=True)


def test_reap_filters_by_worker(client: docker.DockerClient) -> None:
    cid = _container(client, "other-worker")
    seen: list[dict[str, str]] = []

    def record(labels: dict[str, str]) -> bool:
        seen.append(labels)
        return True

    reap(client, record, worker=f"nobody-{SESSION}")
    assert seen == []
    reap(client, record, worker=WORKER)
    assert [labels[LABEL_JOB] for labels in seen] == ["other-worker"]
    client.api.remove_container(cid, force=True)


def test_reap_tolerates_concurrent_removal(client: docker.DockerClient) -> None:
    cid = _container(client, "vanishing")

    def keep(labels: dict[str, str]) -> bool:
        if labels.get(SESSION_LABEL) != SESSION:
            return True
        client.api.remove_container(cid, force=True)  # someone else got there first
        return False

    assert reap(client, keep, worker=WORKER) == []
    assert not _exists(client, cid)
