"""A coordinator on in-memory fakes, driven like a worker would drive it.

Pipelines come from GitLab-style YAML through the real loader, so a test reads like
the ``.gitlab-ci.yml`` it is about.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from fakes import FakeBlobs, FakeStore, ProbingDispatcher, RecordingDispatcher

from farm.coordinator.service import Coordinator, JobResult
from farm.domain.clock import utcnow
from farm.domain.messages import ArtifactReport
from farm.domain.records import BuildRecord, JobRecord, NewBuild
from farm.domain.specs import PipelineLimits
from farm.domain.state import queue_for
from farm.domain.statuses import BuildStatus, JobStatus
from farm.pipeline import PipelineContext, load_pipeline
from farm.settings import Settings


def artifact(
    name: str,
    digest: str,
    size: int,
    expire_in: int | None = None,
    kind: Literal["archive", "dotenv"] = "archive",
    files: tuple[str, ...] = (),
) -> ArtifactReport:
    """One artifact as a worker reports it in its finish message."""
    return ArtifactReport(
        name=name, kind=kind, digest=digest, size=size, expire_in=expire_in, files=list(files)
    )


class FakeClock:
    """A monotonic clock that moves only when told (the coordinator's broker back-off)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Rig:
    """Coordinator + fake store, blobs and dispatcher, plus a worker's moves."""

    def __init__(self, tmp_path: Path, *, probe: bool = False, **settings: Any) -> None:
        """``probe``: the dispatcher's broker tells its epoch and queue lengths
        (:class:`ProbingDispatcher`), as the Celery one on Redis does."""
        self.store = FakeStore()
        self.blobs = FakeBlobs()
        self.dispatcher = ProbingDispatcher() if probe else RecordingDispatcher()
        self.settings = Settings(data_dir=tmp_path, **settings)
        self.clock = FakeClock()
        self.coord = Coordinator(
            self.store, self.blobs, self.dispatcher, self.settings, clock=self.clock
        )
        # The API has been up for a while: leases count from heartbeats alone (tests of a
        # restarted API set ``coord.up_since`` themselves).
        self.coord.up_since = utcnow() - timedelta(hours=1)
        self.finished: list[BuildRecord] = []
        self.coord.on_build_finished.append(self.finished.append)

    # --- builds ----------------------------------------------------------------------

    def start(
        self,
        yaml_text: str,
        variables: Mapping[str, str] | None = None,
        *,
        project: str = "app",
        ref: str = "main",
        limits: PipelineLimits | None = None,
    ) -> int:
        """Load ``yaml_text``, persist its build as ``submit`` does and advance it."""
        text = textwrap.dedent(yaml_text)
        context = PipelineContext(
            variables=dict(variables or {}),
            read=lambda _: None,
            limits=limits or PipelineLimits(),
        )
        pipeline = load_pipeline(text, ".gitlab-ci.yml", context)
        new = NewBuild(
            project=project,
            repo=f"/src/{project}",
            ref=ref,
            commit="a" * 40,
            pipeline_file=".gitlab-ci.yml",
            pipeline_digest="sha256:" + "b" * 64,
            snapshot_digest=self.blobs.put(b"snapshot"),
            stages=pipeline.stages,
            variables={},
            jobs=tuple((job, queue_for(job.tags)) for job in pipeline.jobs),
        )
        build_id = self.store.create_build(new, status=BuildStatus.PENDING)
        self.coord.advance(build_id)
        return build_id

    def build(self, build_id: int) -> BuildRecord:
        return self.store.get_build(build_id)

    def job(self, build_id: int, name: str) -> JobRecord:
        job = self.build(build_id).job_named(name)
        assert job is not None, f"no job {name!r}"
        return job

    def statuses(self, build_id: int) -> dict[str, str]:
        """name -> status word of every job of the build."""
        return {j.name: str(j.status) for j in self.build(build_id).jobs}

    def with_status(self, build_id: int, status: JobStatus) -> list[str]:
        return [j.name for j in self.build(build_id).jobs if j.status == status]

    def dispatched(self, build_id: int | None = None) -> list[str]:
        """Names of the jobs handed to the dispatcher so far, in order (repeats included)."""
        out: list[str] = []
        for job_id, _, _ in self.dispatcher.calls:
            job = self.store.get_job(job_id)
            if build_id is None or job.build_id == build_id:
                out.append(job.name)
        return out

    # --- a worker's moves ------------------------------------------------------------

    def heartbeat(self, job_id: int, attempt: int) -> bool:
        """A worker's log request without text: does its attempt still run?"""
        return self.coord.beat_and_log(job_id, attempt, "")[0]

    def log(self, job_id: int, attempt: int, text: str) -> bool:
        """A worker's log request with ``text``: was it stored?"""
        return self.coord.beat_and_log(job_id, attempt, text)[1]

    def claim(self, build_id: int, name: str, worker: str = "w1") -> JobRecord:
        job = self.job(build_id, name)
        claimed = self.coord.claim(job.id, job.attempt, worker)
        assert claimed is not None, f"{name} could not be claimed ({job.status})"
        return claimed

    def finish(
        self,
        build_id: int,
        name: str,
        exit_code: int | None = 0,
        reason: str | None = None,
        artifacts: tuple[ArtifactReport, ...] = (),
    ) -> JobRecord:
        """Report the end of the job's current attempt."""
        job = self.job(build_id, name)
        result = JobResult(exit_code=exit_code, reason=reason, artifacts=artifacts)
        return self.coord.finish(job.id, job.attempt, result)

    def run(
        self,
        build_id: int,
        name: str,
        exit_code: int | None = 0,
        reason: str | None = None,
        artifacts: tuple[ArtifactReport, ...] = (),
    ) -> JobRecord:
        """Claim and finish: one whole attempt of a pending job."""
        self.claim(build_id, name)
        return self.finish(build_id, name, exit_code, reason, artifacts)

    def run_all_pending(self, build_id: int, failing: tuple[str, ...] = ()) -> list[str]:
        """Run every pending job (and those that become pending) until none is left."""
        ran: list[str] = []
        while pending := self.with_status(build_id, JobStatus.PENDING):
            for name in pending:
                self.run(build_id, name, exit_code=1 if name in failing else 0)
                ran.append(name)
        return ran
