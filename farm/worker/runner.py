"""One job attempt on a worker: claim, lay out the workspace, run the container, report.

The worker decides nothing about the build: it asks the coordinator for the
attempt (a stale or duplicated message gets no assignment and does nothing),
fetches inputs by digest over HTTP, runs the container and reports back.

Three fences keep an attempt honest (issue 16): its job dir lives under the worker's
private work dir and is removed by whoever finds it unlocked (``workdir``); its
container stops itself when this worker stops renewing its lease, and the next
attempt removes it first on the same dockerd (``lease``, ``executor.reaper.fence``);
its log and result are spooled on disk and re-sent until the API takes them
(``spool``).

The Celery task's slot stays taken while the attempt's own report is being
delivered, also through an API outage: claims need the same API, so a freed slot
could run nothing meanwhile — it would only take the next message off the broker and
lose it to a failing claim. A worker that is shutting down stops waiting and leaves
the spool on disk; the next start (or any worker sharing the work dir) sends it.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable

from farm.domain.messages import (
    MAX_MESSAGE,
    ArtifactReport,
    Assignment,
    FinishReport,
    TestReport,
)
from farm.domain.statuses import ArtifactKind, FailureReason
from farm.errors import FarmError, ImageNotFound, ProtocolMismatch, ServiceUnavailable
from farm.executor.base import (
    ContainerJob,
    Executor,
    ImagePuller,
    Limits,
    Mount,
    RunResult,
    resolve_image,
)
from farm.executor.reaper import LABEL_API, job_labels
from farm.pipeline.expressions import compile_regex
from farm.registry.archive import compression_level, pack, unpack
from farm.registry.client import RegistryClient
from farm.settings import Settings
from farm.worker.api_client import CoordinatorClient
from farm.worker.blob_cache import BLOBS, BlobCache
from farm.worker.cache import CacheIndex, JobCaches, literal_pattern, untracked_files
from farm.worker.lease import LEASE_FILE, LeaseKeeper, container_lease
from farm.worker.logstream import LogStream
from farm.worker.reports import junit_report
from farm.worker.scripts import write_scripts
from farm.worker.spool import Spool, deliver
from farm.worker.workdir import WorkDir

log = logging.getLogger("farm.worker")
__all__ = ["LABEL_API", "JobRunner", "coverage_of", "parse_dotenv"]
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_T = TypeVar("_T")


@dataclass
class _Output:
    """The job's output as text (the last ``cap`` bytes), for the ``coverage:`` regex."""

    cap: int
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0

    def feed(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        while self.size > self.cap and len(self.chunks) > 1:
            self.size -= len(self.chunks.pop(0))

    def text(self) -> str:
        return b"".join(self.chunks).decode(errors="replace")


def coverage_of(pattern: str | None, text: str) -> float | None:
    """GitLab ``coverage:``: the last match of ``/regex/`` in the log, its first number."""
    if not pattern:
        return None
    try:
        regex = compile_regex(pattern)
    except ValueError:
        return None  # the loader already refused invalid ones
    value = None
    for match in regex.finditer(text):
        number = _NUMBER.search(match.group(0))
        if number is not None:
            value = float(number.group(0))
    return value


@runtime_checkable
class StartsAfter(Protocol):
    """An executor that creates the job's containers while the caller lays out its
    inputs (``DockerExecutor.run_after``); the job container starts after both."""

    def run_after(
        self,
        job: ContainerJob,
        on_output: Callable[[bytes], None],
        should_cancel: Callable[[], bool],
        before_start: Callable[[], None] | None,
    ) -> RunResult: ...


def _has_dotenv(spec: Assignment) -> bool:
    """Whether an input is a dotenv report: it changes the job's environment."""
    return any(item.kind == "dotenv" for item in spec.inputs)


@dataclass(frozen=True)
class _Outcome:
    result: RunResult
    artifacts: list[ArtifactReport]
    coverage: float | None = None
    tests: TestReport | None = None  # artifacts: reports: junit (farm/worker/reports.py)


@dataclass
class JobRunner:
    """Runs claimed job attempts with an executor; one instance per worker process."""

    settings: Settings
    executor: Executor
    coordinator: CoordinatorClient
    registry: RegistryClient
    cache_index: CacheIndex | None = None  # built on first use: most jobs have no cache
    # Sends the spooled log and result: one try per call, the spool retries.
    reporter: CoordinatorClient | None = None
    # Set when the worker shuts down: stop waiting for the API, leave the spool on disk.
    stopping: threading.Event = field(default_factory=threading.Event)
    workdir: WorkDir | None = None
    blobs: BlobCache | None = None  # default: FARM_WORK_DIR/blobs

    def __post_init__(self) -> None:
        if self.reporter is None:
            self.reporter = CoordinatorClient.for_spool(
                self.coordinator.base_url, self.coordinator.token
            )
        if self.workdir is None:
            self.workdir = WorkDir(self.settings.resolved_work_dir)
        if self.blobs is None:
            registry = self.registry
            self.blobs = BlobCache(
                self.workdir.root / BLOBS,
                self.settings.worker_blob_cache_bytes,
                lambda digest, dest: registry.download_to(digest, dest, durable=False),
            )

    def run(self, job_id: int, attempt: int) -> str:
        """Run ``attempt`` of ``job_id`` if it is still ours to run; returns what happened."""
        worker = self.settings.worker_name
        try:
            spec = self.coordinator.claim(job_id, attempt, worker)
        except ProtocolMismatch as exc:
            # The API took the claim but answers in a protocol this worker cannot follow:
            # fail the attempt now, saying why, instead of leaving it to the lease.
            log.error("job %s attempt %s: %s", job_id, attempt, exc)
            self.coordinator.finish(
                job_id,
                FinishReport(attempt=attempt, reason=FailureReason.WORKER_ERROR, message=str(exc)),
            )
            raise
        if spec is None:
            log.info("job %s attempt %s is stale or taken; nothing to do", job_id, attempt)
            return "stale"
        marks: dict[str, float] = {"worker_claimed": time.time()}  # the attempt's timeline
        assert self.workdir is not None and self.reporter is not None
        spool, spool_error = self._spool(job_id, attempt, spec.job_token)
        try:
            with LogStream(
                self.reporter,
                job_id,
                attempt,
                masks=spec.masks,
                spool=spool,
                cap=self.settings.log_max_bytes,
            ) as logs:
                if spool_error:
                    logs.system(spool_error)
                try:
                    with self.workdir.job_dir(job_id, attempt) as jobdir:
                        outcome = self._execute(spec, jobdir, logs, marks)
                except Exception as exc:
                    # A fault of this worker or its host, not of the job: fail the attempt
                    # now with a reason (retry: when: runner_system_failure applies) rather
                    # than leave it running until its lease runs out as "worker_lost".
                    log.exception("job %s attempt %s: worker error", job_id, attempt)
                    message = f"farm worker error: {type(exc).__name__}: {exc}"
                    logs.system(message)
                    result = RunResult(exit_code=None, reason="worker_error", message=message)
                    outcome = _Outcome(result, [])
            # The job dir is gone (artifacts are uploaded); the report is durable first.
            spool.add_finish(_report(attempt, outcome, spec.job_token, marks))
            how = deliver(spool, self.reporter, self.settings.spool_patience, self.stopping)
            if how != "delivered":
                log.warning("job %s attempt %s: report %s", job_id, attempt, how)
            result = outcome.result
            return result.reason or f"exit {result.exit_code}"
        finally:
            spool.close()

    def _spool(self, job_id: int, attempt: int, job_token: str) -> tuple[Spool, str]:
        """The attempt's spool on disk; in memory (and why, for the log) if that fails."""
        assert self.workdir is not None
        try:
            return Spool.create(self.workdir.spool_dir, job_id, attempt, job_token), ""
        except Exception as exc:  # the report must still go out, without durability
            log.exception("job %s attempt %s: cannot spool reports on disk", job_id, attempt)
            why = f"WARNING: reports are not spooled on disk: {type(exc).__name__}: {exc}"
            return Spool.memory(job_id, attempt, job_token), why

    def _execute(
        self, spec: Assignment, jobdir: Path, logs: LogStream, marks: dict[str, float]
    ) -> _Outcome:
        workspace = jobdir / "workspace"
        workspace.mkdir(parents=True)
        spec = spec.model_copy(update={"image": self._image(spec.image, logs)})
        logs.system(f"Running on {self.settings.worker_name} with image {spec.image}")
        output = _Output(cap=self.settings.log_max_bytes)
        tracked: list[str] = []
        caches: JobCaches | None = None

        def write(data: bytes) -> None:
            output.feed(data)
            logs.write(data)

        try:
            if isinstance(self.executor, StartsAfter) and not _has_dotenv(spec):
                # Issue 11: the container is created while the inputs are laid out (the
                # container's environment is known up front when no dotenv comes in).
                self._scripts(spec, jobdir)
                laid: list[tuple[list[str], JobCaches | None]] = []

                def lay_out() -> None:
                    variables, tracked = self._fetch_inputs(spec, jobdir, workspace, logs)
                    laid.append((tracked, self._caches(spec, jobdir, workspace, variables, logs)))
                    marks["inputs_ready"] = time.time()

                marks["container_create"] = time.time()
                container = self._container(spec, jobdir, dict(spec.variables))
                with LeaseKeeper(jobdir / "farm" / LEASE_FILE):
                    result = self.executor.run_after(container, write, logs.canceled, lay_out)
                tracked, caches = laid[0] if laid else ([], None)
            else:
                variables, tracked = self._fetch_inputs(spec, jobdir, workspace, logs)
                caches = self._caches(spec, jobdir, workspace, variables, logs)
                self._scripts(spec, jobdir)
                marks["inputs_ready"] = marks["container_create"] = time.time()
                with LeaseKeeper(jobdir / "farm" / LEASE_FILE):
                    result = self.executor.run(
                        self._container(spec, jobdir, variables), write, logs.canceled
                    )
        except ImageNotFound as exc:
            result = RunResult(exit_code=None, reason="image_not_found", message=str(exc))
        except FarmError as exc:
            result = RunResult(exit_code=None, reason="executor_error", message=str(exc))
        if result.started_at is not None and result.finished_at is not None:
            marks["container_started"] = result.started_at
            marks["container_exited"] = result.finished_at
        if result.message:
            logs.system(result.message)
        if result.reason == "timeout":
            logs.system(f"job exceeded its timeout of {spec.timeout} s and was killed")
        if result.reason == "canceled":
            return _Outcome(result, [])
        coverage = coverage_of(spec.coverage, output.text())
        ok = result.exit_code == 0 and result.reason is None
        if caches is not None:
            caches.save(ok, tracked)
        try:
            artifacts = self._patiently(
                lambda: self._collect(spec, jobdir, workspace, result, logs, tracked), logs
            )
        except FarmError as exc:
            logs.system(f"uploading artifacts failed: {exc}")
            failed = RunResult(
                exit_code=result.exit_code, reason="executor_error", message=str(exc)
            )
            return _Outcome(failed, [], coverage)
        marks["outputs_stored"] = time.time()
        status = "succeeded" if ok else "failed"
        logs.system(
            f"Job {status}" + (f" (exit code {result.exit_code})" if result.exit_code else "")
        )
        junit = spec.artifacts.junit if spec.artifacts else []
        tests = junit_report(workspace, junit, logs.system)
        return _Outcome(result, artifacts, coverage, tests)

    def _scripts(self, spec: Assignment, jobdir: Path) -> None:
        """The job's scripts in its /farm dir (the wrapper linked from the work dir's)."""
        assert self.workdir is not None
        lease = container_lease(self.settings)
        before, script, after = spec.before_script, spec.script, spec.after_script
        write_scripts(jobdir / "farm", before, script, after, lease, self.workdir.scripts_dir)

    def _patiently(self, call: Callable[[], _T], logs: LogStream) -> _T:
        """``call()``, tried again while the farm API is unreachable (uploads after a job).

        An outage at the end of a job must not turn its success into a failure: keep
        trying for ``FARM_SPOOL_PATIENCE`` seconds, as the report itself would.
        """
        deadline = time.monotonic() + self.settings.spool_patience
        wait = 1.0
        while True:
            try:
                return call()
            except ServiceUnavailable as exc:
                if time.monotonic() + wait > deadline or self.stopping.is_set():
                    raise
                logs.system(f"the farm API is unreachable ({exc}); trying again in {wait:g} s")
                if self.stopping.wait(wait):
                    raise
                wait = min(wait * 2, 30.0)

    def _caches(
        self,
        spec: Assignment,
        jobdir: Path,
        workspace: Path,
        variables: dict[str, str],
        logs: LogStream,
    ) -> JobCaches | None:
        """Compute the job's cache keys on the laid-out workspace and restore its caches."""
        if not spec.cache:
            return None
        if self.cache_index is None:
            self.cache_index = CacheIndex(
                self.settings.resolved_api_url, token=self.coordinator.token
            )
        caches = JobCaches(
            spec.cache,
            project=spec.project,
            workspace=workspace,
            scratch=jobdir / "in",
            env=variables,
            index=self.cache_index,
            registry=self.registry,
            say=logs.system,
        )
        caches.restore()
        return caches

    def _fetch_inputs(
        self, spec: Assignment, jobdir: Path, workspace: Path, logs: LogStream
    ) -> tuple[dict[str, str], list[str]]:
        """Lay out snapshot and upstream artifacts; returns (variables, snapshot's files)."""
        inbox = jobdir / "in"
        inbox.mkdir()
        blobs = self.blobs
        assert blobs is not None
        with blobs.open(spec.snapshot_digest, inbox / "snapshot.tar") as snap:
            tracked = unpack(snap.path, workspace)
        if snap.cached:
            logs.system(f"Source snapshot {spec.snapshot_digest[:19]}… from this worker's cache")
        variables = dict(spec.variables)
        for item in spec.inputs:
            with blobs.open(item.digest, inbox / item.digest.replace(":", "_")) as blob:
                if item.kind == "dotenv":
                    variables.update(parse_dotenv(blob.path.read_text(errors="replace")))
                else:
                    how = "from this worker's cache" if blob.cached else "downloaded"
                    logs.system(f"Artifacts of {item.job} ({item.size} bytes) {how}")
                    unpack(blob.path, workspace)
        return variables, tracked

    def _image(self, image: str, logs: LogStream) -> str:
        """The job's image, or its local stand-in when it is missing (no registry here)."""
        try:
            # The real image (present, or pulled) before a stand-in (no registry here).
            puller = self.executor if isinstance(self.executor, ImagePuller) else None
            chosen, note = resolve_image(
                image,
                self.settings.image_aliases,
                self.executor.image_exists,
                puller.pull_image if puller is not None else None,
            )
        except FarmError:
            return image  # the executor reports the real problem with its own words
        if note:
            logs.system(note)
        return chosen

    def _container(self, spec: Assignment, jobdir: Path, variables: dict[str, str]) -> ContainerJob:
        limits = spec.limits
        entry = spec.image_entrypoint
        return ContainerJob(
            image=spec.image,
            command=("sh", "/farm/run.sh"),
            entrypoint=tuple(entry) if entry else None,
            env=variables,
            mounts=(
                Mount(str(jobdir / "workspace"), spec.project_dir),
                Mount(str(jobdir / "farm"), "/farm", read_only=True),
            ),
            workdir=spec.project_dir,
            labels={
                **job_labels(spec.build_id, spec.job_id, spec.attempt, self.settings.worker_name),
                LABEL_API: self.settings.resolved_api_url,
            },
            timeout=float(spec.timeout),
            limits=Limits(
                memory_bytes=limits.memory,
                nano_cpus=int(limits.cpus * 1e9),
                pids=limits.pids,
            ),
            network=self.settings.job_network,
            services=tuple(s.to_spec() for s in spec.services),
            name=f"farm-{spec.build_id}-{spec.job_id}-{spec.attempt}-{uuid.uuid4().hex[:6]}",
            # image:docker:user (GitLab's Docker executor option): `docker run --user`.
            user=spec.image_docker.user if spec.image_docker is not None else None,
        )

    def _collect(
        self,
        spec: Assignment,
        jobdir: Path,
        workspace: Path,
        result: RunResult,
        logs: LogStream,
        tracked: list[str],
    ) -> list[ArtifactReport]:
        art = spec.artifacts
        if art is None:
            return []
        ok = result.exit_code == 0 and result.reason is None
        when = art.when
        if not (when == "always" or (when == "on_success") == ok):
            return []
        out: list[ArtifactReport] = []
        paths = list(art.paths)
        if art.untracked:  # files the commit did not have (build outputs, inputs)
            paths += [literal_pattern(p) for p in untracked_files(workspace, tracked)]
        if paths:
            dest = jobdir / "artifacts.tar.gz"
            level, warning = compression_level(spec.variables.get("ARTIFACT_COMPRESSION_LEVEL"))
            if warning:
                logs.system(f"WARNING: ARTIFACT_COMPRESSION_LEVEL: {warning}")
            packed = pack(workspace, paths, art.exclude, dest=dest, level=level)
            files = packed.files
            if files:
                info = self.registry.upload_file(dest, packed.blob)
                logs.system(
                    f"Uploaded {len(files)} artifact files ({info.size} bytes, {info.digest[:19]})"
                )
                out.append(
                    ArtifactReport(
                        name=art.name or spec.name,
                        kind=ArtifactKind.ARCHIVE,
                        digest=info.digest,
                        size=info.size,
                        expire_in=art.expire_in,
                        files=files,
                    )
                )
            else:
                logs.system("WARNING: no files matched artifacts:paths")
        for rel in art.dotenv:
            path = workspace / rel
            if path.is_file() and path.resolve().is_relative_to(workspace.resolve()):
                info = self.registry.upload_file(path)
                out.append(
                    ArtifactReport(
                        name=rel,
                        kind=ArtifactKind.DOTENV,
                        digest=info.digest,
                        size=info.size,
                        expire_in=art.expire_in,
                    )
                )
        return out


def parse_dotenv(text: str) -> dict[str, str]:
    """GitLab's ``artifacts:reports:dotenv``: KEY=VALUE lines, no expansion."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip().removeprefix("export ").strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if key.replace("_", "a").isalnum():
            out[key] = value
    return out


def _report(
    attempt: int, outcome: _Outcome, job_token: str = "", marks: dict[str, float] | None = None
) -> FinishReport:
    """The finish report of an attempt; its message is cut to what the API accepts."""
    result = outcome.result
    message = result.message
    if len(message) > MAX_MESSAGE:
        cut = "… (truncated)"
        message = message[: MAX_MESSAGE - len(cut)] + cut
    coverage = outcome.coverage
    return FinishReport(
        attempt=attempt,
        job_token=job_token,
        exit_code=result.exit_code,
        reason=result.reason,
        message=message,
        artifacts=outcome.artifacts,
        coverage=coverage if coverage is not None and math.isfinite(coverage) else None,
        tests=outcome.tests,
        timeline={**marks, "report_sent": time.time()} if marks else None,
    )
