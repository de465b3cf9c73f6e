"""DockerExecutor.run_after (issue 11): the container is created while the caller lays
out the inputs, starts only after both, and nothing outlives a failing layout."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from farm.errors import RegistryError
from farm.executor.base import ContainerJob, Limits, Mount
from farm.executor.docker import DockerExecutor
from farm.executor.reaper import job_labels

pytestmark = pytest.mark.integration
SESSION = uuid.uuid4().hex[:12]


@pytest.fixture(scope="module")
def client(docker_client: docker.DockerClient) -> Iterator[docker.DockerClient]:
    yield docker_client
    for c in docker_client.containers.list(
        all=True, filters={"label": f"farm.test-session={SESSION}"}
    ):
        c.remove(force=True)


@pytest.fixture
def executor(client: docker.DockerClient) -> DockerExecutor:
    return DockerExecutor(client=client, poll_interval=0.1)


def make_job(script: str, **overrides: Any) -> ContainerJob:
    fields: dict[str, Any] = {
        "image": "farm/busybox:latest",
        "command": ("sh", "-c", script),
        "entrypoint": None,
        "env": {},
        "mounts": (),
        "workdir": "/",
        "labels": {
            **job_labels("b1", uuid.uuid4().hex[:8], 1, f"test-{SESSION}"),
            "farm.test-session": SESSION,
        },
        "timeout": 30.0,
        "limits": Limits(memory_bytes=256 * 1024 * 1024, nano_cpus=1_000_000_000, pids=128),
    }
    fields.update(overrides)
    return ContainerJob(**fields)


class Captured:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def __call__(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    @property
    def text(self) -> str:
        return b"".join(self.chunks).decode()


def gone(client: docker.DockerClient, job: ContainerJob) -> bool:
    label = f"farm.job={job.labels['farm.job']}"
    return not client.containers.list(all=True, filters={"label": label})


def test_create_overlaps_the_inputs_and_start_waits_for_them(
    executor: DockerExecutor, client: docker.DockerClient, tmp_path: Path
) -> None:
    job = make_job("cat /w/input.txt", mounts=(Mount(str(tmp_path), "/w"),))
    created = threading.Event()
    executor.on_created = lambda role, cid: created.set()
    try:

        def lay_out() -> None:
            # The container exists before the inputs are there, and has not run yet.
            assert created.wait(30)
            (tmp_path / "input.txt").write_text("laid out\n")

        out = Captured()
        result = executor.run_after(job, out, lambda: False, lay_out)
    finally:
        executor.on_created = None
    assert (result.exit_code, result.reason) == (0, None), result.message
    assert out.text == "laid out\n"
    assert gone(client, job)


def test_a_failing_layout_is_raised_as_is_and_leaves_no_container(
    executor: DockerExecutor, client: docker.DockerClient
) -> None:
    job = make_job("echo never")

    def lay_out() -> None:
        raise RegistryError("the snapshot could not be fetched")

    out = Captured()
    with pytest.raises(RegistryError, match="snapshot"):
        executor.run_after(job, out, lambda: False, lay_out)
    assert out.text == ""
    assert gone(client, job)


def test_a_missing_image_with_a_layout_is_a_result(
    executor: DockerExecutor, client: docker.DockerClient
) -> None:
    job = make_job("true", image="farm/no-such-image:never")
    laid: list[int] = []
    result = executor.run_after(job, Captured(), lambda: False, lambda: laid.append(1))
    assert result.reason == "image_not_found"
    assert laid == [1]
    assert gone(client, job)


def test_present_images_are_inspected_once(client: docker.DockerClient) -> None:
    calls: list[str] = []
    ex = DockerExecutor(client=client)
    real = client.api.inspect_image

    def counting(image: str) -> object:
        calls.append(image)
        return real(image)

    client.api.inspect_image = counting  # type: ignore[method-assign]
    try:
        assert ex.image_exists("farm/busybox:latest")
        assert ex.image_exists("farm/busybox:latest")
        assert not ex.image_exists("farm/no-such-image:never")
        assert not ex.image_exists("farm/no-such-image:never")  # a missing one: asked again
    finally:
        client.api.inspect_image = real  # type: ignore[method-assign]
    assert calls.count("farm/busybox:latest") == 1
    assert calls.count("farm/no-such-image:never") == 2
