"""DockerExecutor against the real dockerd, with the local farm/busybox image.

Every container and image made here carries a label unique to this test session,
and cleanup removes only those, so parallel sessions on the same daemon are safe.
"""

from __future__ import annotations

import io
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from farm.domain.specs import ServiceSpec
from farm.executor.base import CAP_ADD, ContainerJob, Limits, Mount, RunResult
from farm.executor.docker import DockerExecutor
from farm.executor.reaper import LABEL_ROLE, job_labels

pytestmark = pytest.mark.integration

IMAGE = "farm/busybox:latest"
SESSION_LABEL = "farm.test-session"
SESSION = uuid.uuid4().hex[:12]
MiB = 1024 * 1024


def _ours(client: docker.DockerClient) -> Any:
    return client.containers.list(all=True, filters={"label": f"{SESSION_LABEL}={SESSION}"})


@pytest.fixture(scope="module")
def client(docker_client: docker.DockerClient) -> Iterator[docker.DockerClient]:
    """The session's dockerd client; this module's leftovers are removed after it."""
    yield docker_client
    for container in _ours(docker_client):  # only this session's leftovers, if any
        container.remove(force=True)
    for image in docker_client.images.list(filters={"label": f"{SESSION_LABEL}={SESSION}"}):
        docker_client.images.remove(image.id, force=True)


@pytest.fixture(scope="module")
def executor(client: docker.DockerClient) -> DockerExecutor:
    return DockerExecutor(client=client, poll_interval=0.1)


def _build(client: docker.DockerClient, tag: str, dockerfile: str) -> str:
    """A tiny image on top of farm/busybox (no pull), labelled for cleanup."""
    name = f"farm-test-{SESSION}/{tag}:latest"
    fileobj = io.BytesIO(f"FROM {IMAGE}\n{dockerfile}\n".encode())
    client.images.build(
        fileobj=fileobj,
        tag=name,
        labels={SESSION_LABEL: SESSION},
        pull=False,
        rm=True,
        forcerm=True,
    )
    return name


def make_job(script: str, **overrides: Any) -> ContainerJob:
    job_id = uuid.uuid4().hex[:8]
    fields: dict[str, Any] = {
        "image": IMAGE,
        "command": ("sh", "-c", script),
        "entrypoint": None,
        "env": {"FARM_TEST": "yes"},
        "mounts": (),
        "workdir": "/",
        "labels": {**job_labels("b1", job_id, 1, f"test-{SESSION}"), SESSION_LABEL: SESSION},
        "timeout": 30.0,
        "limits": Limits(memory_bytes=256 * MiB, nano_cpus=1_000_000_000, pids=128),
    }
    fields.update(overrides)
    return ContainerJob(**fields)


class Captured:
    """Collects output chunks with their arrival times."""

    def __init__(self) -> None:
        self.chunks: list[tuple[float, bytes]] = []

    def __call__(self, chunk: bytes) -> None:
        self.chunks.append((time.time(), chunk))

    @property
    def text(self) -> str:
        return b"".join(c for _, c in self.chunks).decode()


def run(
    executor: DockerExecutor, job: ContainerJob, cancel: Callable[[], bool] = lambda: False
) -> tuple[RunResult, Captured]:
    out = Captured()
    result = executor.run(job, out, cancel)
    return result, out


def gone(client: docker.DockerClient, job: ContainerJob) -> bool:
    """No container of this job (job, services or holder) is left."""
    label = f"farm.job={job.labels['farm.job']}"
    return not client.containers.list(all=True, filters={"label": label})


@pytest.mark.parametrize("code", [0, 3])
def test_exit_code_output_and_removal(
    executor: DockerExecutor, client: docker.DockerClient, code: int
) -> None:
    job = make_job(f"echo out; echo err >&2; echo $FARM_TEST; exit {code}")
    result, out = run(executor, job)
    assert (result.exit_code, result.reason) == (code, None)
    # stdout and stderr are separate pipes: order is kept within each, not across.
    assert sorted(out.text.split()) == ["err", "out", "yes"]
    assert result.started_at is not None and result.finished_at is not None
    assert gone(client, job)


def test_output_streams_while_running(executor: DockerExecutor) -> None:
    result, out = run(executor, make_job("echo first; sleep 2; echo second"))
    assert result.exit_code == 0
    first = next(t for t, c in out.chunks if b"first" in c)
    second = next(t for t, c in out.chunks if b"second" in c)
    assert result.finished_at is not None
    assert second - first > 1.5, out.chunks
    assert result.finished_at - first > 1.5, "first chunk must arrive long before exit"


def test_no_output_lost_at_exit(executor: DockerExecutor) -> None:
    script = "i=0; while [ $i -lt 5000 ]; do echo line$i; i=$((i+1)); done; echo -n tail"
    result, out = run(executor, make_job(script))
    assert result.exit_code == 0
    lines = out.text.split("\n")
    assert lines[:-1] == [f"line{i}" for i in range(5000)]
    assert lines[-1] == "tail"


def test_instant_exit_output_is_never_missed(executor: DockerExecutor) -> None:
    # Attach happens before start; a container that prints and exits at once
    # must still deliver its output, every time.
    for _ in range(15):
        result, out = run(executor, make_job("echo hi"))
        assert (result.exit_code, out.text) == (0, "hi\n")


def test_timeout_kills_and_removes(executor: DockerExecutor, client: docker.DockerClient) -> None:
    job = make_job("echo start; sleep 60", timeout=1.5)
    t0 = time.monotonic()
    result, out = run(executor, job)
    assert result.reason == "timeout" and result.exit_code is None
    assert "timeout of 1.5 s" in result.message
    assert time.monotonic() - t0 < 6
    assert "start" in out.text
    assert gone(client, job)


def test_cancel_kills_and_removes(executor: DockerExecutor, client: docker.DockerClient) -> None:
    job = make_job("sleep 60")
    t0 = time.monotonic()
    result, _ = run(executor, job, cancel=lambda: time.monotonic() - t0 > 1.0)
    assert result.reason == "canceled"
    assert time.monotonic() - t0 < 5
    assert gone(client, job)


def test_concurrent_runs_share_one_executor(
    executor: DockerExecutor, client: docker.DockerClient
) -> None:
    jobs = [make_job(f"sleep 1; echo job{i}; exit {i}") for i in range(4)]
    results: dict[int, tuple[RunResult, Captured]] = {}

    def one(i: int) -> None:
        results[i] = run(executor, jobs[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    t0 = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert time.monotonic() - t0 < 4  # they overlapped
    for i, (result, out) in results.items():
        assert (result.exit_code, out.text) == (i, f"job{i}\n")
        assert gone(client, jobs[i])


@pytest.fixture
def host_listener() -> Iterator[int]:
    """A TCP listener on the host's 127.0.0.1 that accepts and closes."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                conn.close()
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def test_no_network(executor: DockerExecutor, host_listener: int) -> None:
    probe = f"ls /sys/class/net; nc -w 2 127.0.0.1 {host_listener} </dev/null 2>&1; echo rc=$?"
    result, out = run(executor, make_job(probe))
    assert result.exit_code == 0
    lines = out.text.split()
    assert lines[0] == "lo" and "rc=1" in lines and "rc=0" not in lines
    # Control: the same probe does reach the listener with host networking.
    result, out = run(executor, make_job(probe, network="host"))
    assert "rc=0" in out.text.split()


def test_isolation_settings_applied(executor: DockerExecutor, client: docker.DockerClient) -> None:
    seen: dict[str, Any] = {}
    executor.on_created = lambda role, cid: seen.update(client.api.inspect_container(cid))
    script = (
        "grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status;"
        "cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max;"
        "cat /sys/fs/cgroup/memory.max 2>/dev/null"
        " || cat /sys/fs/cgroup/memory/memory.limit_in_bytes"
    )
    try:
        result, out = run(executor, make_job(script))
    finally:
        executor.on_created = None
    assert result.exit_code == 0, out.text
    status = dict(line.split(":\t") for line in out.text.splitlines()[:3])
    caps = {"CHOWN": 0, "DAC_OVERRIDE": 1, "FOWNER": 3, "FSETID": 4, "KILL": 5}
    caps |= {"SETGID": 6, "SETUID": 7}
    mask = sum(1 << caps[name] for name in CAP_ADD)
    assert int(status["CapEff"], 16) == mask and int(status["CapBnd"], 16) == mask
    assert status["NoNewPrivs"] == "1"
    assert out.text.splitlines()[3:] == ["128", str(256 * MiB)]
    hc = seen["HostConfig"]
    assert hc["Privileged"] is False and hc["Init"] is True
    assert hc["CapDrop"] == ["ALL"] and "NET_RAW" not in hc["CapAdd"]
    assert hc["SecurityOpt"] == ["no-new-privileges"] and hc["IpcMode"] == "private"
    assert (hc["Memory"], hc["MemorySwap"], hc["PidsLimit"]) == (256 * MiB, 256 * MiB, 128)
    assert hc["NanoCpus"] == 1_000_000_000 and hc["NetworkMode"] == "none"
    assert hc["LogConfig"]["Type"] == "none"
    assert not any("docker.sock" in m["Source"] for m in seen["Mounts"])


def test_pids_limit_enforced(executor: DockerExecutor) -> None:
    script = "i=0; while [ $i -lt 40 ]; do sleep 1 & i=$((i+1)); done; wait"
    _, out = run(executor, make_job(script, limits=Limits(256 * MiB, 10**9, 16)))
    assert "can't fork" in out.text or "Resource temporarily unavailable" in out.text, out.text


def test_oom_is_reported(executor: DockerExecutor, client: docker.DockerClient) -> None:
    job = make_job("tail /dev/zero", limits=Limits(16 * MiB, 10**9, 64))
    result, _ = run(executor, job)
    assert result.reason == "oom" and result.exit_code == 137
    assert "out of memory" in result.message
    assert gone(client, job)


def test_missing_image_is_reported_quickly(
    executor: DockerExecutor, client: docker.DockerClient
) -> None:
    job = make_job("true", image=f"farm-test-{SESSION}/absent:1")
    t0 = time.monotonic()
    result, _ = run(executor, job)
    assert result.reason == "image_not_found" and result.exit_code is None
    assert "not available locally" in result.message and "scripts/images.sh" in result.message
    assert time.monotonic() - t0 < 12
    assert gone(client, job)


def test_bind_mounts(executor: DockerExecutor, tmp_path: Path) -> None:
    (tmp_path / "ws").mkdir()
    (tmp_path / "ro").mkdir()
    (tmp_path / "ws" / "in.txt").write_text("from host\n")
    mounts = (Mount(str(tmp_path / "ws"), "/farm/ws"), Mount(str(tmp_path / "ro"), "/ro", True))
    script = "cat in.txt; pwd; echo from job > out.txt; touch /ro/x 2>/dev/null || echo ro-ok"
    result, out = run(executor, make_job(script, mounts=mounts, workdir="/farm/ws"))
    assert result.exit_code == 0
    assert out.text.split("\n")[:3] == ["from host", "/farm/ws", "ro-ok"]
    assert (tmp_path / "ws" / "out.txt").read_text() == "from job\n"


def test_entrypoint_is_cleared_or_used(
    executor: DockerExecutor, client: docker.DockerClient
) -> None:
    image = _build(client, "entry", 'ENTRYPOINT ["echo", "from-image-entrypoint"]')
    _, out = run(executor, make_job("echo plain", image=image))
    assert out.text == "plain\n"
    _, out = run(executor, make_job("x", image=image, entrypoint=("echo", "custom")))
    assert out.text == "custom sh -c x\n"


def test_output_handler_failure(executor: DockerExecutor, client: docker.DockerClient) -> None:
    def broken(chunk: bytes) -> None:
        raise RuntimeError("log store down")

    job = make_job("echo a; sleep 30")
    result = executor.run(job, broken, lambda: False)
    assert result.reason == "executor_error" and "log store down" in result.message
    assert gone(client, job)


def test_interrupt_still_removes(executor: DockerExecutor, client: docker.DockerClient) -> None:
    def interrupt() -> bool:
        raise KeyboardInterrupt

    job = make_job("sleep 30")
    with pytest.raises(KeyboardInterrupt):
        executor.run(job, Captured(), interrupt)
    assert gone(client, job)


def test_runtime_error_is_one_line(executor: DockerExecutor, client: docker.DockerClient) -> None:
    job = make_job("true", mounts=(Mount(f"/nonexistent-{SESSION}", "/x"),))
    result, _ = run(executor, job)
    assert result.reason == "executor_error"
    assert "docker failed" in result.message and "\n" not in result.message
    assert gone(client, job)


SERVER = ("nc", "-ll", "-p", "7777", "-e", "echo", "hi")


def test_service_reachable_on_localhost(
    executor: DockerExecutor, client: docker.DockerClient
) -> None:
    # The image EXPOSEs 7777, so the executor waits for the port before the job.
    image = _build(client, "svc", "EXPOSE 7777")
    roles: list[str] = []
    executor.on_created = lambda role, cid: roles.append(role)
    try:
        service = ServiceSpec(name=image, alias=("echo-svc",), command=SERVER)
        job = make_job("nc 127.0.0.1 7777 </dev/null", services=(service,))
        result, out = run(executor, job)
    finally:
        executor.on_created = None
    assert (result.exit_code, out.text) == (0, "hi\n")
    assert roles == ["holder", "service", "job"]
    assert gone(client, job)


def test_service_without_exposed_port(
    executor: DockerExecutor, client: docker.DockerClient
) -> None:
    labels: list[dict[str, Any]] = []
    executor.on_created = lambda role, cid: labels.append(client.api.inspect_container(cid))
    service = ServiceSpec(name=IMAGE, alias=("a", "b"), command=SERVER)
    retry = (
        "for i in 1 2 3 4 5 6 7 8 9 10; do nc 127.0.0.1 7777 </dev/null && exit 0; sleep 0.3; done"
    )
    job = make_job(retry + "; exit 1", services=(service,))
    try:
        result, out = run(executor, job)
    finally:
        executor.on_created = None
    assert (result.exit_code, out.text) == (0, "hi\n")
    svc = next(c for c in labels if c["Config"]["Labels"][LABEL_ROLE] == "service")
    assert svc["Config"]["Labels"]["farm.service.alias"] == "a,b"
    assert svc["Config"]["Labels"][SESSION_LABEL] == SESSION
    assert svc["HostConfig"]["NetworkMode"].startswith("container:")
    assert gone(client, job)


def test_missing_service_image(executor: DockerExecutor, client: docker.DockerClient) -> None:
    service = ServiceSpec(name=f"farm-test-{SESSION}/no-such-service:1")
    job = make_job("true", services=(service,))
    result, _ = run(executor, job)
    assert result.reason == "image_not_found" and "no-such-service" in result.message
    assert gone(client, job)


def test_nothing_left_behind(client: docker.DockerClient) -> None:
    left = [(c.short_id, c.labels, c.attrs["Config"]["Cmd"], c.status) for c in _ours(client)]
    assert left == []
