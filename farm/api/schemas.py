"""HTTP shapes of the API (pydantic); built from records, never from ORM rows."""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Any

from fastapi import Response
from pydantic import BaseModel, Field, StringConstraints, WithJsonSchema, field_validator

from farm.api.limits import Line, NoControl
from farm.db.repository import JobLine
from farm.domain.messages import TestReport
from farm.domain.records import ArtifactRecord, BuildRecord, JobRecord
from farm.domain.statuses import build_status_text

MAX_PATH = 4096  # PATH_MAX: a repository's path or URL
MAX_PATH_PART = 255  # NAME_MAX: one component of a path
MAX_VARIABLES = 1000  # variables (or secrets) of one build request
MAX_VALUE = 1024 * 1024  # one variable's value (what a job assignment carries, at most)

RepoText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_PATH), NoControl()]
_NAME_RULE = NoControl(also="=")
_VALUE_RULE = NoControl(text=True)
VariableName = Annotated[str, StringConstraints(min_length=1, max_length=255), _NAME_RULE]
VariableValue = Annotated[str, StringConstraints(max_length=MAX_VALUE), _VALUE_RULE]
Variables = Annotated[
    dict[VariableName, VariableValue],
    Field(max_length=MAX_VARIABLES),
    WithJsonSchema(
        {
            "type": "object",
            "maxProperties": MAX_VARIABLES,
            "propertyNames": {"minLength": 1, "maxLength": 255, "pattern": _NAME_RULE.pattern},
            "additionalProperties": {
                "type": "string",
                "maxLength": MAX_VALUE,
                "pattern": _VALUE_RULE.pattern,
            },
        }
    ),
]


class BuildRequest(BaseModel):
    """``POST /api/v1/builds``: every string bounded, no control characters (422 otherwise)."""

    repo: RepoText = Field(description="git URL or a path on the coordinator host")
    ref: Line | None = Field(default=None, description="branch or tag; default: the repo's HEAD")
    commit: Line | None = Field(default=None, description="exact commit; default: the ref's tip")
    variables: Variables = Field(default_factory=dict)
    secrets: Variables = Field(
        default_factory=dict,
        description="masked variables: given to jobs, masked in logs, never shown",
    )
    no_cache: bool = Field(
        default=False, description="run every job: reuse no earlier identical job's result"
    )

    @field_validator("repo")
    @classmethod
    def _path_fits(cls, repo: str) -> str:
        # A local path the host can look up at all: PATH_MAX and NAME_MAX bytes, a known
        # user in ``~user``.  (URLs are git's to judge.)
        if "://" in repo or repo.startswith("git@"):
            return repo
        if len(repo.encode()) >= MAX_PATH:
            raise ValueError(f"a path of {MAX_PATH} bytes or more")
        if any(len(part.encode()) > MAX_PATH_PART for part in repo.split("/")):
            raise ValueError(f"a path component is over {MAX_PATH_PART} bytes")
        if repo.startswith("~") and os.path.expanduser(repo).startswith("~"):
            raise ValueError(f"no such user: {repo.split('/', 1)[0][:64]!r}")
        return repo


class ArtifactOut(BaseModel):
    """An artifact as listed on a job or build."""

    name: str
    kind: str
    digest: str
    size: int
    url: str
    expires_at: datetime | None = None
    files: list[str] = Field(default_factory=list)

    @classmethod
    def of(cls, a: ArtifactRecord) -> ArtifactOut:
        """From a record."""
        return cls(
            name=a.name,
            kind=a.kind,
            digest=a.digest,
            size=a.size,
            url=f"/api/v1/artifacts/{a.digest}",
            expires_at=a.expires_at,
            files=list(a.files),
        )


class JobOut(BaseModel):
    """A job inside the build document."""

    id: int
    build_id: int
    name: str
    stage: str
    status: str
    attempt: int
    exit_code: int | None
    reason: str | None
    image: str | None
    worker: str | None
    when: str
    allow_failure: bool
    needs: list[str] | None
    started_at: datetime | None
    finished_at: datetime | None
    duration: float | None
    artifacts: list[ArtifactOut]
    coverage: float | None = None  # from the job's ``coverage:`` regex over its log
    tests: TestReport | None = None  # totals of its artifacts: reports: junit
    environment: dict[str, Any] | None = None  # its environment: (name, url, action)
    # "stuck: no worker serves tags [gpu]" while pending with no live worker for its queue
    stuck_reason: str | None = None
    # Issue 11: the attempt's marks (farm/domain/timeline.py, epoch seconds), and whether
    # its result was reused from an earlier identical job (nothing ran).
    timeline: dict[str, float] | None = None
    cached: bool = False

    @classmethod
    def of(cls, j: JobRecord) -> JobOut:
        """From a record."""
        duration = None
        if j.started_at and j.finished_at:
            duration = round((j.finished_at - j.started_at).total_seconds(), 3)
        return cls(
            id=j.id,
            build_id=j.build_id,
            name=j.name,
            stage=j.stage,
            status=j.status,
            attempt=j.attempt,
            exit_code=j.exit_code,
            reason=j.reason,
            image=j.spec.image,
            worker=j.worker,
            when=j.spec.when,
            allow_failure=j.spec.allow_failure,
            needs=[n.job for n in j.spec.needs] if j.spec.needs is not None else None,
            started_at=j.started_at,
            finished_at=j.finished_at,
            duration=duration,
            artifacts=[ArtifactOut.of(a) for a in j.artifacts],
            coverage=j.coverage,
            stuck_reason=j.stuck_reason if j.status == "pending" else None,
            tests=TestReport.model_validate(j.test_report) if j.test_report else None,
            environment=_environment(j),
            timeline=j.timeline,
            cached=j.cached_from is not None,
        )


def _environment(j: JobRecord) -> dict[str, Any] | None:
    env = j.spec.environment
    return None if env is None else {"name": env.name, "url": env.url, "action": env.action}


class BuildOut(BaseModel):
    """The build document (``GET /api/v1/builds/{id}``)."""

    id: int
    status: str
    project: str
    repo: str
    ref: str
    commit: str
    pipeline_file: str
    pipeline_digest: str
    snapshot_digest: str
    stages: list[str]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    deliverable: dict[str, Any] | None
    jobs: list[JobOut]
    # Set when the build runs a job of another build on its behalf (a rollout's deploy
    # or check job): that build's id.
    parent_build: int | None = None
    # What started it: GitLab's CI_PIPELINE_SOURCE words (api, push, merge_request_event,
    # schedule, ...); the CLI submits through the API, so its builds say ``api``.
    source: str = "api"
    # The first stuck reason of its pending jobs (farm.coordinator.stuck), else None.
    stuck_reason: str | None = None
    # GitLab's ``tag`` flag as a word: the build is of a "branch" or a "tag" ("commit":
    # a bare sha); ``status_text`` is what people read ("blocked" for status ``manual``).
    ref_kind: str = "branch"
    status_text: str = ""

    @classmethod
    def of(cls, b: BuildRecord) -> BuildOut:
        """From a record."""
        deliverable = None
        if b.deliverable_digest:
            deliverable = {
                "digest": b.deliverable_digest,
                "url": f"/api/v1/builds/{b.id}/deliverable",
                "blob": f"/api/v1/artifacts/{b.deliverable_digest}",
            }
        jobs = [JobOut.of(j) for j in b.jobs]
        return cls(
            id=b.id,
            status=b.status,
            project=b.project,
            repo=b.repo,
            ref=b.ref,
            commit=b.commit,
            pipeline_file=b.pipeline_file,
            pipeline_digest=b.pipeline_digest,
            snapshot_digest=b.snapshot_digest,
            stages=list(b.stages),
            created_at=b.created_at,
            started_at=b.started_at,
            finished_at=b.finished_at,
            error=b.error,
            deliverable=deliverable,
            jobs=jobs,
            parent_build=b.parent_build_id,
            source=str(b.source),
            stuck_reason=_first_stuck(jobs),
            ref_kind=str(b.ref_kind),
            status_text=build_status_text(b.status),
        )


def build_document(build: BuildRecord, jobs: list[JobLine]) -> bytes:
    """``BuildOut`` of a build and its job lines (``Store.job_lines``) as JSON bytes.

    The same document as ``BuildOut.of(store.get_build(id))``, without parsing any job
    spec or validating every job again: a 10,000-job build is served in a fraction of a
    second. The rows come from the database, so ``model_construct`` is safe here.
    """
    doc = BuildOut.of(build)  # the build's own fields, validated (it has no jobs here)
    doc.jobs = [
        JobOut.model_construct(
            id=j.id,
            build_id=j.build_id,
            name=j.name,
            stage=j.stage,
            status=str(j.status),
            attempt=j.attempt,
            exit_code=j.exit_code,
            reason=j.reason,
            image=j.image,
            worker=j.worker,
            when=j.when,
            allow_failure=j.allow_failure,
            needs=list(j.needs) if j.needs is not None else None,
            started_at=j.started_at,
            finished_at=j.finished_at,
            duration=round((j.finished_at - j.started_at).total_seconds(), 3)
            if j.started_at and j.finished_at
            else None,
            artifacts=[ArtifactOut.of(a) for a in j.artifacts],
            coverage=j.coverage,
            stuck_reason=j.stuck_reason if j.status == "pending" else None,
            tests=TestReport.model_validate(j.test_report) if j.test_report else None,
            environment=j.environment,
            timeline=j.timeline,
            cached=j.cached,
        )
        for j in jobs
    ]
    doc.stuck_reason = _first_stuck(doc.jobs)
    # Job by job: one serializer call holds the GIL from start to end, which for a
    # 10,000-job document stalled every other request of the API for ~0.1 s.
    lines, doc.jobs = doc.jobs, []
    head = doc.model_dump_json().encode()
    body = b",".join(j.model_dump_json().encode() for j in lines)
    # Quotes inside JSON strings are escaped: the only raw `"jobs":[]` is the field.
    return head.replace(b'"jobs":[]', b'"jobs":[' + body + b"]", 1)


def _first_stuck(jobs: Iterable[JobOut]) -> str | None:
    return next((j.stuck_reason for j in jobs if j.stuck_reason), None)


def model_response(model: BaseModel, status_code: int = 200) -> Response:
    """``model`` as a JSON response, as FastAPI would serialize it for ``response_model``.

    For a sync endpoint FastAPI validates a returned model again in its thread pool: a
    second thread hop per request. The worker protocol's answers (one or two per job)
    are built from validated models already, so they go out as they are.
    """
    return Response(
        model.model_dump_json(by_alias=True), status_code, media_type="application/json"
    )
