"""Plain records the store returns and the service works with (never ORM rows)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from farm.domain.specs import JobSpec
from farm.domain.statuses import BuildStatus, JobStatus


@dataclass(frozen=True)
class ArtifactRecord:
    """A blob a job produced (its artifacts archive, a dotenv report, …)."""

    id: int
    build_id: int
    job_id: int | None
    name: str
    kind: str  # an ArtifactKind word (kept open: older rows may hold others)
    digest: str
    size: int
    created_at: datetime
    expires_at: datetime | None = None
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobRecord:
    """One job of a build, with its current state."""

    id: int
    build_id: int
    name: str
    stage: str
    position: int
    spec: JobSpec
    status: JobStatus
    attempt: int
    queue: str
    exit_code: int | None = None
    reason: str | None = None
    worker: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    heartbeat_at: datetime | None = None
    lost_count: int = 0
    log_bytes: int = 0
    coverage: float | None = None
    artifacts: tuple[ArtifactRecord, ...] = ()
    stuck_reason: str | None = None  # why it waits with no worker (issue 10)
    test_report: dict[str, Any] | None = None  # a messages.TestReport (reports: junit)
    queued_at: datetime | None = None  # when the broker took its message
    timeline: dict[str, float] | None = None  # farm/domain/timeline.py (epoch seconds)
    cached_from: int | None = None  # the job whose recorded result this one reused


class RefKind(StrEnum):
    """What a build's ref names: GitLab builds a branch or a tag (``CI_COMMIT_TAG``)."""

    BRANCH = "branch"
    TAG = "tag"
    COMMIT = "commit"  # neither: a sha or a detached HEAD was given as the ref


def ref_variables(kind: str, ref: str) -> dict[str, str]:
    """GitLab's variables naming a build's ref: ``CI_COMMIT_REF_NAME``/``_SLUG`` (the short
    name either way) and ``CI_COMMIT_TAG`` for a tag's build or ``CI_COMMIT_BRANCH`` for
    a branch's, never both; a build of a bare commit has neither."""
    name = ref.removeprefix("refs/heads/").removeprefix("refs/tags/")
    slug = "".join(c if c.isalnum() else "-" for c in name.lower())[:63].strip("-")
    out = {"CI_COMMIT_REF_NAME": name, "CI_COMMIT_REF_SLUG": slug}
    if kind == RefKind.TAG:
        out["CI_COMMIT_TAG"] = name
    elif kind == RefKind.BRANCH:
        out["CI_COMMIT_BRANCH"] = name
    return out


class PipelineSource(StrEnum):
    """What started a build: GitLab's ``CI_PIPELINE_SOURCE`` words (the CLI is ``api``)."""

    API = "api"
    PUSH = "push"
    MERGE_REQUEST_EVENT = "merge_request_event"
    SCHEDULE = "schedule"
    PARENT_PIPELINE = "parent_pipeline"
    WEB = "web"
    TRIGGER = "trigger"


@dataclass(frozen=True)
class JobTiming:
    """When a started job was queued, started and finished (metrics' histograms)."""

    queue: str
    status: JobStatus
    queued_at: datetime | None
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class BuildOrigin:
    """The git host a webhook build came from, where its commit status is reported."""

    host: str  # "github" or "gitlab"
    api_url: str  # https://api.github.com, or a GitLab's base URL (https://gitlab.example)
    project: str  # GitHub "owner/repo"; GitLab project id or path_with_namespace


@dataclass(frozen=True)
class BuildRecord:
    """A build: one commit's pipeline and its jobs."""

    id: int
    project: str
    repo: str
    ref: str
    commit: str
    status: BuildStatus
    created_at: datetime
    pipeline_file: str
    pipeline_digest: str
    snapshot_digest: str
    stages: tuple[str, ...]
    variables: dict[str, str] = field(default_factory=dict)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cancel_requested: bool = False
    deliverable_digest: str | None = None
    error: str | None = None
    secrets: dict[str, str] = field(default_factory=dict)
    jobs: tuple[JobRecord, ...] = ()
    # Set for a build that runs a job of another build on its behalf (coordinator/spawn.py).
    parent_build_id: int | None = None
    source: str = PipelineSource.API  # a PipelineSource word (kept open: older rows)
    origin: BuildOrigin | None = None  # None: not from a git host's webhook
    ref_kind: str = RefKind.BRANCH  # a RefKind word: the build is for a branch or a tag
    default_branch: str = "main"  # the repository's default branch (CI_DEFAULT_BRANCH)

    def job_named(self, name: str) -> JobRecord | None:
        """The job called ``name`` in this build, if any."""
        return next((j for j in self.jobs if j.name == name), None)


@dataclass(frozen=True)
class NewBuild:
    """Everything needed to persist a build and its jobs in one transaction."""

    project: str
    repo: str
    ref: str
    commit: str
    pipeline_file: str
    pipeline_digest: str
    snapshot_digest: str
    stages: tuple[str, ...]
    variables: dict[str, str]
    jobs: tuple[tuple[JobSpec, str], ...]  # (spec, queue) in definition order
    secrets: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    parent_build_id: int | None = None
    source: str = PipelineSource.API
    origin: BuildOrigin | None = None
    ref_kind: str = RefKind.BRANCH
    default_branch: str = "main"

    def job_records(self, build_id: int, ids: Sequence[int]) -> tuple[JobRecord, ...]:
        """The jobs as stored for ``build_id``, freshly created, given their ids in
        definition order."""
        return tuple(
            JobRecord(
                id=job_id,
                build_id=build_id,
                name=spec.name,
                stage=spec.stage,
                position=pos,
                spec=spec,
                status=JobStatus.CREATED,
                attempt=1,
                queue=queue,
            )
            for pos, (job_id, (spec, queue)) in enumerate(zip(ids, self.jobs, strict=True))
        )


@dataclass(frozen=True)
class ReleaseRecord:
    """One release: a project's version pinned to a build and its deliverable."""

    id: int
    project: str
    version: str
    build_id: int
    ref: str
    commit: str
    deliverable_digest: str
    created_at: datetime


@dataclass(frozen=True)
class ArtifactListing:
    """An artifact row joined with its build (what ``GET /api/v1/artifacts`` lists)."""

    id: int
    build_id: int
    job_id: int | None
    name: str
    kind: str
    digest: str
    size: int
    created_at: datetime
    expires_at: datetime | None
    project: str
    ref: str
    commit: str
    build_status: str
    job_name: str | None = None
