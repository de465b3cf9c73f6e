"""Error mapping and the reaper's logic, without a daemon (fake clients)."""

from __future__ import annotations

import time
from typing import Any

import docker.errors
import pytest
import requests

from farm.errors import ExecutorError, ImageNotFound, ServiceUnavailable
from farm.executor.base import ContainerJob
from farm.executor.docker import DockerExecutor
from farm.executor.reaper import reap

JOB = ContainerJob(
    image="img",
    command=("true",),
    entrypoint=None,
    env={},
    mounts=(),
    workdir="/",
    labels={"farm.job": "j"},
    timeout=5,
)


def test_unreachable_daemon_raises_service_unavailable(tmp_path: Any) -> None:
    executor = DockerExecutor(base_url=f"unix://{tmp_path}/no.sock")
    t0 = time.monotonic()
    with pytest.raises(ServiceUnavailable, match=r"cannot reach dockerd at unix://.*no\.sock"):
        executor.run(JOB, lambda b: None, lambda: False)
    with pytest.raises(ServiceUnavailable):
        executor.image_exists("img")
    assert time.monotonic() - t0 < 10


def test_translate() -> None:
    executor = DockerExecutor(client=object())
    response = requests.Response()
    response.status_code = 500
    api_error = docker.errors.APIError("boom", response=response, explanation="disk full")
    error = executor.translate(api_error, "create the container")
    assert isinstance(error, ExecutorError) and not isinstance(error, ImageNotFound)
    assert str(error) == "docker failed to create the container: disk full (HTTP 500)"
    lost = executor.translate(requests.ConnectionError("refused"), "start")
    assert isinstance(lost, ServiceUnavailable)
    gone = docker.errors.ImageNotFound("no such image", response=response, explanation="x")
    assert isinstance(executor.translate(gone, "create"), ImageNotFound)


class FakeAPI:
    """Just enough of docker's APIClient for reap()."""

    def __init__(self, containers: list[dict[str, Any]], vanished: set[str]) -> None:
        self.listed: list[dict[str, Any]] = containers
        self.vanished = vanished
        self.filters: Any = None
        self.removed: list[str] = []

    def containers(self, all: bool, filters: dict[str, Any]) -> list[dict[str, Any]]:
        assert all is True
        self.filters = filters
        return self.listed

    def remove_container(self, cid: str, force: bool, v: bool) -> None:
        assert force and v
        if cid in self.vanished:
            raise docker.errors.NotFound("gone")
        self.removed.append(cid)


class FakeClient:
    def __init__(self, api: FakeAPI) -> None:
        self.api = api


def test_reap_logic() -> None:
    api = FakeAPI(
        [
            {"Id": "a", "Labels": {"farm.job": "1"}},
            {"Id": "b", "Labels": {"farm.job": "2"}},
            {"Id": "c", "Labels": {"farm.job": "3"}},
        ],
        vanished={"c"},
    )
    removed = reap(FakeClient(api), lambda labels: labels["farm.job"] == "2", worker="w")
    assert removed == ["a"] and api.removed == ["a"]
    assert api.filters == {"label": ["farm.job", "farm.worker=w"]}
    reap(FakeClient(api), lambda labels: True)
    assert api.filters == {"label": ["farm.job"]}
