"""Run each job attempt in a fresh, locked-down Docker container.

One :meth:`DockerExecutor.run`: create the container (never ``run``: with
``stream=True`` it yields nothing until exit, docker-py#2510), attach to its
output *before* start (``logs(follow=True)`` can hang after exit, #3084), start,
pump output from a thread, wait with timeout and cancel polling, and always
force-remove what it created, KeyboardInterrupt included. Jobs with ``services``
get a pod: a holder owns the network namespace, services and job join it, so the
job reaches its services on 127.0.0.1. Before anything is created, the attempt is
*fenced*: containers of the same job's other attempts on this dockerd are removed
and their removal confirmed (``reaper.fence``), so attempt N+1 never runs beside
attempt N's orphan.

Speed (issue 11): :meth:`DockerExecutor.run_after` creates the containers on a helper
thread while the caller lays out the job's inputs, and starts the job container once
both are done (start is what costs: ~0.2 s alone, ~0.4 s at 4 concurrent starts here,
against ~15-35 ms for create). Present images are remembered for ``IMAGE_CHECK_TTL``
seconds, so a job does not inspect its image twice (the worker's image resolution,
then ``ensure_image``). Every job still gets its own fresh container, removed before
``run`` returns.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import docker
import docker.errors
import docker.utils
import requests

from farm.domain.specs import ServiceSpec
from farm.errors import ExecutorError, FarmError, ImageNotFound, ServiceUnavailable
from farm.executor import base
from farm.executor.base import ContainerJob, Limits, Mount, Reason, RunResult
from farm.executor.reaper import (
    LABEL_API,
    LABEL_ATTEMPT,
    LABEL_BUILD,
    LABEL_JOB,
    LABEL_ROLE,
    LABEL_SERVICE_ALIAS,
    ROLE_HOLDER,
    ROLE_JOB,
    ROLE_SERVICE,
    fence,
)

log = logging.getLogger(__name__)

HOLDER_IMAGE = "farm/busybox:latest"  # must provide `sleep` and `cat`
HOLDER_LIMITS = Limits(memory_bytes=32 * 1024 * 1024, nano_cpus=100_000_000, pids=16)
PULL_TIMEOUT = 10.0  # seconds for the one pull attempt of a missing image
PULL_RETRY_AFTER = 60.0  # seconds a failed pull is remembered, so N jobs don't wait N times
SERVICE_WAIT = 30.0  # seconds to wait for a service's exposed ports to listen
DRAIN_TIMEOUT = 5.0  # seconds to finish reading output after the container stopped
_OOM_RECHECKS = 5  # inspections after a 137 exit while OOMKilled is not set yet
_OOM_RECHECK_WAIT = 0.1  # seconds between them
FENCE_TIMEOUT = 60.0  # seconds to see another attempt's containers removed before giving up
IMAGE_CHECK_TTL = 30.0  # seconds an image found present is not inspected again


class _Stop(Exception):
    """Raised inside a run to stop it early for ``reason``."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(reason)
        self.reason: Reason = reason


class DockerExecutor:
    """An :class:`~farm.executor.base.Executor` backed by a local dockerd.

    Thread-safe (one instance may run several jobs at once). The client is made
    on first use, so constructing the executor never needs a running daemon.
    """

    def __init__(
        self,
        client: docker.DockerClient | None = None,
        base_url: str | None = None,
        poll_interval: float = 0.5,
        holder_image: str = HOLDER_IMAGE,
        pull_timeout: float = PULL_TIMEOUT,
        service_wait: float = SERVICE_WAIT,
        fence_timeout: float = FENCE_TIMEOUT,
        pull: bool = False,
    ) -> None:
        self._client = client
        # Off by default: this farm assumes no registry, and even a failing pull makes
        # dockerd resolve the registry's name (traffic off this host). FARM_IMAGE_PULL.
        self.pull = pull
        self._base_url = base_url
        self.poll_interval = poll_interval
        self.holder_image = holder_image
        self.pull_timeout = pull_timeout
        self.service_wait = service_wait
        self.fence_timeout = fence_timeout
        self._lock = threading.Lock()
        self._failed_pulls: dict[str, float] = {}  # image -> monotonic time of failure
        self._present: dict[str, float] = {}  # image -> monotonic time it was seen present
        #: Test hook: called with (role, container id) right after each create.
        self.on_created: Callable[[str, str], None] | None = None

    @property
    def client(self) -> docker.DockerClient:
        """The Docker client, created (and the daemon reached) on first use."""
        with self._lock:
            if self._client is None:
                url = self._base_url
                try:  # both ping the daemon to learn its API version
                    self._client = docker.DockerClient(base_url=url) if url else docker.from_env()
                except docker.errors.DockerException as exc:
                    raise self._unreachable() from exc
            return self._client

    def _unreachable(self) -> ServiceUnavailable:
        where = self._base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        return ServiceUnavailable(f"cannot reach dockerd at {where}: is it running?")

    def translate(self, exc: Exception, doing: str) -> FarmError:
        """Map a Docker SDK failure to farm's error tree, as one readable line."""
        if isinstance(exc, FarmError):
            return exc
        if isinstance(exc, docker.errors.ImageNotFound):  # removed between check and create
            return ImageNotFound(f"docker failed to {doing}: {exc.explanation}")
        if isinstance(exc, docker.errors.APIError):  # before RequestException: it is one
            detail = exc.explanation or str(exc)
            return ExecutorError(f"docker failed to {doing}: {detail} (HTTP {exc.status_code})")
        if isinstance(exc, requests.RequestException):
            return self._unreachable()
        return ExecutorError(f"docker failed to {doing}: {exc}")

    def image_exists(self, image: str) -> bool:
        """Whether ``image`` is present in the local image store (a present one is
        remembered for ``IMAGE_CHECK_TTL`` seconds; a missing one is asked again)."""
        with self._lock:
            seen = self._present.get(image)
        if seen is not None and time.monotonic() - seen <= IMAGE_CHECK_TTL:
            return True
        try:
            self.client.api.inspect_image(image)
        except docker.errors.ImageNotFound:
            self.forget_image(image)
            return False
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise self.translate(exc, f"inspect image {image!r}") from exc
        with self._lock:
            self._present[image] = time.monotonic()
        return True

    def forget_image(self, image: str) -> None:
        """Inspect ``image`` again next time (it was removed under us)."""
        with self._lock:
            self._present.pop(image, None)

    def ensure_image(self, image: str) -> None:
        """Make ``image`` available or raise :class:`ImageNotFound` quickly.

        There is usually no registry, so a missing image gets a single pull with
        a short deadline, and a failure is remembered for a minute.
        """
        if self.image_exists(image) or self.pull_image(image):
            return
        raise ImageNotFound(base.missing_image_message(image))

    def pull_image(self, image: str) -> bool:
        """One pull of a missing ``image`` within ``pull_timeout``; whether it is present
        after. A failure is remembered for a minute, so N jobs don't wait N times."""
        with self._lock:
            failed_at = self._failed_pulls.get(image)
        if not self.pull:
            return False
        if failed_at is not None and time.monotonic() - failed_at <= PULL_RETRY_AFTER:
            return False
        if self._try_pull(image) and self.image_exists(image):
            return True
        with self._lock:
            self._failed_pulls[image] = time.monotonic()
        return False

    def _try_pull(self, image: str) -> bool:
        repo, tag = docker.utils.parse_repository_tag(image)
        # The SDK pulls without a timeout; running it in a thread bounds our wait.
        done, outcome = _in_thread(lambda: self.client.api.pull(repo, tag=tag or "latest"))
        if done.wait(self.pull_timeout) and not isinstance(outcome[0], BaseException):
            return True
        log.info("pull of %s failed: %s", image, outcome[0] if outcome else "timed out")
        return False

    def run(
        self,
        job: ContainerJob,
        on_output: Callable[[bytes], None],
        should_cancel: Callable[[], bool],
    ) -> RunResult:
        """Run ``job`` in fresh containers and remove them all before returning.

        Raises :class:`ServiceUnavailable` when dockerd cannot be reached (nothing
        ran; try again later). Every other failure is a :class:`RunResult`:
        ``image_not_found``, or ``executor_error`` with a one-line message.
        """
        return self.run_after(job, on_output, should_cancel, None)

    def run_after(
        self,
        job: ContainerJob,
        on_output: Callable[[bytes], None],
        should_cancel: Callable[[], bool],
        before_start: Callable[[], None] | None,
    ) -> RunResult:
        """:meth:`run`, with ``before_start`` (the caller laying out the job's inputs in
        the job's mounts) called on this thread while the containers are created on
        another; the job container starts once both are done. An exception raised by
        ``before_start`` is raised as is, after what was created is removed. Jobs with
        services prepare their pod first, then call ``before_start`` (the pod's checks
        write to the job's log, which is the caller's while ``before_start`` runs).
        """
        attempt = _Attempt(self, job, on_output, should_cancel)
        if before_start is None or job.services:
            if before_start is not None:
                before_start()
                attempt.restart_clock()
            return self._run(attempt, lambda: self._prepare(attempt))
        done, outcome = _in_thread(lambda: self._prepare(attempt))
        try:
            before_start()
        except BaseException:
            done.wait()  # then remove what it created: nothing outlives run_after
            attempt.remove_all()
            raise
        attempt.restart_clock()  # the job's timeout counts from here, as with run()

        def prepared() -> None:
            done.wait()
            if outcome and isinstance(outcome[0], BaseException):
                raise outcome[0]

        return self._run(attempt, prepared)

    def _prepare(self, attempt: _Attempt) -> None:
        """Check the images, fence off other attempts, create the containers."""
        job = attempt.job
        holder = [self.holder_image] if job.services else []
        for image in [job.image, *(s.name for s in job.services), *holder]:
            self.ensure_image(image)
        self.fence(job)
        attempt.create()

    def _run(self, attempt: _Attempt, prepare: Callable[[], None]) -> RunResult:
        try:
            prepare()
            return attempt.execute()
        except (ExecutorError, docker.errors.DockerException, requests.RequestException) as exc:
            error = self.translate(exc, "run the job")
            if isinstance(error, ServiceUnavailable):
                raise error from exc
            why: Reason = (
                "image_not_found" if isinstance(error, ImageNotFound) else "executor_error"
            )
            return RunResult(None, why, str(error), attempt.started_at, time.time())
        finally:
            attempt.remove_all()  # after a failed prepare; execute() already removed the rest

    def fence(self, job: ContainerJob) -> list[str]:
        """Remove the containers of ``job``'s other attempts on this dockerd; wait for it.

        A job labelled with :data:`LABEL_JOB` and :data:`LABEL_ATTEMPT` (every farm job
        is) is fenced within its build and farm (:data:`LABEL_BUILD`, :data:`LABEL_API`
        when present); a job without them is not fenced. Raises as ``reaper.fence``.
        """
        labels = job.labels
        if LABEL_JOB not in labels or LABEL_ATTEMPT not in labels:
            return []
        attempt = int(labels[LABEL_ATTEMPT])
        if attempt == 1:
            return []  # attempts only count up: the first has no other attempt to fence off
        scope = {k: labels[k] for k in (LABEL_JOB, LABEL_BUILD, LABEL_API) if k in labels}
        return fence(self.client, scope, attempt, self.fence_timeout)


class _Attempt:
    """The state of one :meth:`DockerExecutor.run` call."""

    def __init__(
        self,
        executor: DockerExecutor,
        job: ContainerJob,
        on_output: Callable[[bytes], None],
        should_cancel: Callable[[], bool],
    ) -> None:
        self.ex = executor
        self.job = job
        self.on_output = on_output
        self.should_cancel = should_cancel
        self.deadline = time.monotonic() + job.timeout
        self.created: list[str] = []  # removal order is reverse: job, services, holder
        self.started_at: float | None = None
        self.output_error: BaseException | None = None
        self.reader: threading.Thread | None = None
        self.cid: str | None = None  # the job container, once created

    def restart_clock(self) -> None:
        """Count the job's timeout from now (its inputs were laid out meanwhile)."""
        self.deadline = time.monotonic() + self.job.timeout

    def create(self) -> None:
        """Start the pod (jobs with services), then create the job container."""
        network = self.job.network
        if self.job.services:
            network = f"container:{self._start_pod()}"
        job = self.job
        self.cid = self._create(
            ROLE_JOB, job.limits, job.mounts, image=job.image, command=list(job.command),
            # [] (not None) clears the image's ENTRYPOINT so the command runs as is.
            entrypoint=list(job.entrypoint or ()), environment=job.env, network=network,
            working_dir=job.workdir, user=job.user, name=job.name,
        )  # fmt: skip

    def execute(self) -> RunResult:
        """Attach to the created job container, start it, wait; remove everything."""
        api = self.ex.client.api
        stream: Any = None
        try:
            cid = self.cid
            assert cid is not None, "create() first"
            # Attach before start so not a byte of output is missed.
            stream = api.attach(cid, stdout=True, stderr=True, stream=True, logs=False)
            self.reader = threading.Thread(target=self._pump, args=(stream,), daemon=True)
            self.reader.start()
            api.start(cid)
            self.started_at = time.time()
            status = self._wait(cid)
            finished_at = time.time()
            self.reader.join(DRAIN_TIMEOUT)  # EOF follows exit; bounded in case it doesn't
            if self.output_error is not None:
                raise ExecutorError(f"output handler failed: {self.output_error!r}")
            if isinstance(status, _Stop):
                return RunResult(
                    None, status.reason, self._why(status), self.started_at, finished_at
                )
            state = api.inspect_container(cid)["State"]
            code = int(status.get("StatusCode", state.get("ExitCode", -1)))
            # An OOM kill is a SIGKILL (137), and dockerd may record the exit before the
            # OOM event that sets OOMKilled (moby#18510, moby#15621): ask again, briefly.
            for _ in range(_OOM_RECHECKS if code == 137 else 0):
                if state.get("OOMKilled"):
                    break
                time.sleep(_OOM_RECHECK_WAIT)
                state = api.inspect_container(cid)["State"]
            if state.get("OOMKilled"):
                limit = self.job.limits.memory_bytes // (1024 * 1024)
                msg = f"killed: out of memory (limit {limit} MiB)"
                return RunResult(code, "oom", msg, self.started_at, finished_at)
            return RunResult(code, None, "", self.started_at, finished_at)
        except _Stop as stop:
            return RunResult(None, stop.reason, self._why(stop), self.started_at, time.time())
        finally:
            if stream is not None:
                _close_stream(stream)
            if self.reader is not None:  # so no on_output call outlives run()
                self.reader.join(1.0)
            self.remove_all()

    def _why(self, stop: _Stop) -> str:
        if stop.reason == "timeout":
            return f"killed: the job ran longer than its timeout of {self.job.timeout:g} s"
        return "killed: the job was canceled" if stop.reason == "canceled" else ""

    def _pump(self, stream: Iterable[bytes]) -> None:
        """Reader thread: hand each chunk to on_output, in order, until EOF."""
        try:
            for chunk in stream:
                if self.output_error is not None:
                    continue  # keep draining so the container never blocks on a full pipe
                try:
                    self.on_output(chunk)
                except BaseException as exc:
                    self.output_error = exc
        except (OSError, ValueError) as exc:  # the stream was closed under us: we're done
            log.debug("attach stream ended: %s", exc)

    def _check(self) -> None:
        """Raise :class:`_Stop` if the job ran out of time, was canceled or lost its log."""
        if self.output_error is not None:
            raise _Stop("executor_error")
        if time.monotonic() >= self.deadline:
            raise _Stop("timeout")
        if self.should_cancel():
            raise _Stop("canceled")

    def _wait(self, cid: str) -> dict[str, Any] | _Stop:
        """Wait for exit while polling timeout/cancel; kill on either."""
        api = self.ex.client.api
        exited, outcome = _in_thread(lambda: api.wait(cid))
        poll = self.ex.poll_interval
        while not exited.wait(max(0.0, min(poll, self.deadline - time.monotonic()))):
            try:
                self._check()
            except _Stop as stop:
                self._kill(cid)
                exited.wait(10.0)
                return stop
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return dict(outcome[0])

    def _kill(self, cid: str) -> None:
        try:
            self.ex.client.api.kill(cid)
        except docker.errors.APIError as exc:
            # 409: it exited on its own meanwhile; 404: already gone.
            if exc.status_code not in (404, 409):
                raise

    def _create(self, role: str, limits: Limits, mounts: Iterable[Mount], **config: Any) -> str:
        """Create one isolated container (``config`` as for create_container); track it."""
        api = self.ex.client.api
        network = config.pop("network")
        host_config = api.create_host_config(**base.isolated_host_config(network, limits, mounts))
        labels = {**self.job.labels, **config.pop("labels", {}), LABEL_ROLE: role}
        try:
            created = api.create_container(host_config=host_config, labels=labels, **config)
        except docker.errors.ImageNotFound:
            self.ex.forget_image(str(config.get("image")))
            raise
        cid = str(created["Id"])
        self.created.append(cid)
        if self.ex.on_created is not None:
            self.ex.on_created(role, cid)
        return cid

    def _start_pod(self) -> str:
        """Start the holder and every service; return the holder's id."""
        api, job = self.ex.client.api, self.job
        holder = self._create(
            ROLE_HOLDER, HOLDER_LIMITS, (), image=self.ex.holder_image, entrypoint=[],
            command=["sleep", "2147483647"], network=job.network,
            name=f"{job.name}-pod" if job.name else None,
        )  # fmt: skip
        api.start(holder)
        started: list[tuple[ServiceSpec, str]] = []
        for i, svc in enumerate(job.services):
            sid = self._create(
                ROLE_SERVICE, job.limits, (), image=svc.name,
                # None keeps the image's own ENTRYPOINT/CMD, as GitLab does for services.
                command=None if svc.command is None else list(svc.command),
                entrypoint=None if svc.entrypoint is None else list(svc.entrypoint),
                environment={**job.env, **svc.variables}, network=f"container:{holder}",
                labels={LABEL_SERVICE_ALIAS: ",".join(svc.alias)},
                name=f"{job.name}-svc{i}" if job.name else None,
                user=svc.docker.user if svc.docker is not None else None,
            )  # fmt: skip
            api.start(sid)
            started.append((svc, sid))
        for svc, sid in started:
            self._wait_service(holder, svc, sid)
        return holder

    def _wait_service(self, holder: str, svc: ServiceSpec, sid: str) -> None:
        """Wait until a service runs and listens on the TCP ports its image exposes.

        Like GitLab, a service that dies or never listens is a warning in the job
        log, not a failure: the job's own checks decide.
        """
        api = self.ex.client.api
        wanted = base.exposed_tcp_ports(api.inspect_image(svc.name).get("Config") or {})
        give_up = min(self.deadline, time.monotonic() + self.ex.service_wait)
        while True:
            self._check()
            state = api.inspect_container(sid)["State"]
            if not state.get("Running"):
                self._note(f"service {svc.name!r} exited with status {state.get('ExitCode')}")
                return
            if not wanted or wanted <= self._listening(holder):
                return
            if time.monotonic() >= give_up:
                ports = ", ".join(str(p) for p in sorted(wanted))
                self._note(f"service {svc.name!r} is not listening on {ports}; going on")
                return
            time.sleep(0.2)

    def _listening(self, holder: str) -> set[int]:
        # /proc/net is per network namespace, and the holder owns the pod's.
        api, cmd = self.ex.client.api, ["cat", "/proc/net/tcp", "/proc/net/tcp6"]
        output = api.exec_start(api.exec_create(holder, cmd, stderr=False))
        return base.listening_ports(output.decode("ascii", "replace"))

    def _note(self, message: str) -> None:
        log.warning("%s: %s", self.job.name or self.job.image, message)
        self.on_output(f"farm: {message}\n".encode())

    def remove_all(self) -> None:
        """Force-remove every container of this attempt; never raise."""
        api = self.ex.client.api
        for cid in reversed(self.created):
            try:
                api.remove_container(cid, force=True, v=True)
            except Exception as exc:  # never mask the run's own outcome or exception
                if not isinstance(exc, docker.errors.NotFound):
                    log.warning("could not remove container %s: %s", cid[:12], exc)
        self.created.clear()


def _in_thread(fn: Callable[[], Any]) -> tuple[threading.Event, list[Any]]:
    """Run ``fn`` in a daemon thread; the event is set once ``outcome[0]`` holds its
    result or exception. For blocking SDK calls we must be able to stop waiting on."""
    done, outcome = threading.Event(), []

    def target() -> None:
        try:
            outcome.append(fn())
        except BaseException as exc:
            outcome.append(exc)
        done.set()

    threading.Thread(target=target, daemon=True).start()
    return done, outcome


def _close_stream(stream: Any) -> None:
    """Close an attach stream, unblocking a reader thread stuck on the socket."""
    try:
        stream.close()
        response = getattr(stream, "_response", None)  # release the socket's fd now
        if response is not None:
            response.close()
    except Exception as exc:
        log.debug("closing attach stream: %s", exc)
