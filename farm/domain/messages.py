"""The worker <-> coordinator contract: every message of ``/api/v1/worker``, typed.

Both sides import these models: the API validates what workers send with them and
answers with them; the worker builds its requests with them and parses the answers.
The JSON on the wire is the models' plain ``model_dump(mode="json")``.

Versioning: every request a worker sends, and the assignment it gets back, carries
``protocol``. An API refuses a request whose protocol it does not speak
(:class:`~farm.errors.ProtocolMismatch`, HTTP 426) instead of guessing; a worker
refuses an assignment of another protocol. A body without ``protocol`` is protocol 1,
the wire of farm before the field existed. A change that old peers would misread
(a renamed or re-meant key, a new required field) bumps :data:`PROTOCOL_VERSION`.

Bounds: requests come from the network and end up in the database, so their
strings, lists and numbers are bounded (names fit their columns, digests are
``sha256:<64 hex>``, sizes are non-negative, attempts start at 1). The assignment
is built by the coordinator from an already validated pipeline; its bounds are
structural (digests, ids, limits) with generous caps on text.

::

    worker                                  API
      ClaimRequest  ── POST jobs/{id}/claim ──►  Assignment | 409 (stale or taken)
      LogRequest    ── POST jobs/{id}/log ────►  LogReply   (also the heartbeat)
      FinishReport  ── POST jobs/{id}/finish ─►  FinishReply (may carry the log's tail)
      LiveRequest   ── POST live ─────────────►  LiveReply  (for the reaper)
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from farm.domain.specs import ArtifactSpec, CacheSpec, DockerOptions, ServiceSpec
from farm.domain.statuses import FailureReason, JobStatus
from farm.errors import ProtocolMismatch

__all__ = [
    "MAX_FILES",
    "MAX_FINISH_LOG",
    "MAX_LOG_CHUNK",
    "MAX_MESSAGE",
    "PROTOCOL_VERSION",
    "ArtifactReport",
    "ArtifactRules",
    "Assignment",
    "CacheEntry",
    "ClaimRequest",
    "FinishReply",
    "FinishReport",
    "InputArtifact",
    "Limits",
    "LiveReply",
    "LiveRequest",
    "LogReply",
    "LogRequest",
    "LogTail",
    "ServiceEntry",
    "TestReport",
    "check_protocol",
]

PROTOCOL_VERSION = 3
"""The protocol this farm speaks; bump it when a message changes incompatibly.

2: the claim answers a ``job_token``; log and finish requests must carry it (issue 12).
3: a finish report may carry the last of the attempt's output (``log``), which an API
   of protocol 2 would silently drop (issue 10: one request fewer per short job).
"""

MAX_NAME = 255  # job, stage, worker, artifact names: the width of their columns
MAX_PATH = 4096  # a file path or glob (PATH_MAX)
MAX_MESSAGE = 64 * 1024  # a finish report's message (the worker truncates to it)
MAX_LOG_CHUNK = 4 * 1024 * 1024  # characters of output per log request (the worker splits)
MAX_FINISH_LOG = 256 * 1024  # characters of output a finish report carries at most
MAX_FILES = 1_000_000  # member names listed for one artifact archive
MAX_ARTIFACTS = 1024  # artifacts reported by one attempt
MAX_LIVE_PAIRS = 10_000  # (job, attempt) pairs asked about at once
MAX_TEXT = 1024 * 1024  # one script line, variable value or regex in an assignment
_INT32 = 2**31 - 1  # ids, attempts, exit codes: database integers
_INT64 = 2**63 - 1

Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME)]
PathText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_PATH)]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
Digest = Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]
Id = Annotated[int, Field(ge=1, le=_INT32)]
Attempt = Annotated[int, Field(ge=1, le=_INT32, description="attempt number, from 1")]
Size = Annotated[int, Field(ge=0, le=_INT64, description="bytes")]
JobToken = Annotated[str, StringConstraints(max_length=128)]
ResultWhen = Literal["on_success", "on_failure", "always"]
FileKind = Literal["archive", "dotenv"]  # the artifact kinds a job produces


def check_protocol(theirs: int, *, sender: str = "worker", receiver: str = "API") -> None:
    """Refuse a message in a protocol this side does not speak, saying who to upgrade.

    Raises :class:`~farm.errors.ProtocolMismatch`, e.g. ``worker speaks protocol 2, this
    API speaks 1: upgrade the API (API and workers must speak the same protocol)``.
    """
    if theirs == PROTOCOL_VERSION:
        return
    behind = receiver if theirs > PROTOCOL_VERSION else sender
    raise ProtocolMismatch(
        f"{sender} speaks protocol {theirs}, this {receiver} speaks {PROTOCOL_VERSION}: "
        f"upgrade the {behind} ({receiver} and {sender}s must speak the same protocol)"
    )


# The worker-side marks a finish report may carry (farm/domain/timeline.py orders them).
TimelineMark = Literal[
    "worker_claimed",
    "inputs_ready",
    "container_create",
    "container_started",
    "container_exited",
    "outputs_stored",
    "report_sent",
]
MarkTime = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class _Message(BaseModel):
    """Immutable; unknown keys are ignored (a tolerant reader within one protocol)."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class _Versioned(_Message):
    protocol: int = Field(
        default=PROTOCOL_VERSION,
        ge=1,
        le=_INT32,
        description="protocol of the sender (workers before protocol 1 sent none)",
    )


# --- what a job asks for (from its JobSpec) -------------------------------------------


class ArtifactRules(_Message):
    """The job's ``artifacts:`` (a :class:`~farm.domain.specs.ArtifactSpec` on the wire)."""

    paths: list[Text] = Field(default_factory=list)
    exclude: list[Text] = Field(default_factory=list)
    untracked: bool = False
    when: ResultWhen = "on_success"
    expire_in: Annotated[int, Field(ge=0, le=_INT64)] | None = None  # seconds; None = never
    name: Text | None = None
    dotenv: list[Text] = Field(default_factory=list)  # reports: dotenv files
    junit: list[Text] = Field(default_factory=list)  # reports: junit files (globs)

    @classmethod
    def of(cls, spec: ArtifactSpec) -> ArtifactRules:
        """From the job's spec."""
        return cls(
            paths=list(spec.paths),
            exclude=list(spec.exclude),
            untracked=spec.untracked,
            when=spec.when,
            expire_in=spec.expire_in,
            name=spec.name,
            dotenv=list(spec.dotenv),
            junit=list(spec.junit),
        )


class CacheEntry(_Message):
    """One ``cache:`` entry (a :class:`~farm.domain.specs.CacheSpec`); keys expand on the worker."""

    key: Text = "default"
    key_files: list[Text] = Field(default_factory=list)
    key_prefix: Text | None = None
    paths: list[Text] = Field(default_factory=list)
    untracked: bool = False
    policy: Literal["pull", "push", "pull-push"] = "pull-push"
    when: ResultWhen = "on_success"
    fallback_keys: list[Text] = Field(default_factory=list)

    @classmethod
    def of(cls, spec: CacheSpec) -> CacheEntry:
        """From the job's spec."""
        return cls(
            key=spec.key,
            key_files=list(spec.key_files),
            key_prefix=spec.key_prefix,
            paths=list(spec.paths),
            untracked=spec.untracked,
            policy=spec.policy,
            when=spec.when,
            fallback_keys=list(spec.fallback_keys),
        )


class DockerEntry(_Message):
    """``image:docker`` / ``services:docker``: run as ``user``; ``platform`` is checked."""

    platform: Text | None = None
    user: Text | None = None

    @classmethod
    def of(cls, options: DockerOptions | None) -> DockerEntry | None:
        """From the spec's options (None stays None)."""
        return None if options is None else cls(platform=options.platform, user=options.user)

    def to_options(self) -> DockerOptions:
        """Back to the spec's options."""
        return DockerOptions(platform=self.platform, user=self.user)


class ServiceEntry(_Message):
    """One ``services:`` sidecar (a :class:`~farm.domain.specs.ServiceSpec`)."""

    name: Text
    alias: list[Text] = Field(default_factory=list)
    entrypoint: list[Text] | None = None
    command: list[Text] | None = None
    variables: dict[Text, Text] = Field(default_factory=dict)
    docker: DockerEntry | None = None
    pull_policy: list[Text] = Field(default_factory=list)

    @classmethod
    def of(cls, spec: ServiceSpec) -> ServiceEntry:
        """From the job's spec."""
        return cls(
            name=spec.name,
            alias=list(spec.alias),
            entrypoint=list(spec.entrypoint) if spec.entrypoint is not None else None,
            command=list(spec.command) if spec.command is not None else None,
            variables=dict(spec.variables),
            docker=DockerEntry.of(spec.docker),
            pull_policy=list(spec.pull_policy),
        )

    def to_spec(self) -> ServiceSpec:
        """Back to the spec the executor runs (an empty entrypoint/command means the image's)."""
        return ServiceSpec(
            name=self.name,
            alias=tuple(self.alias),
            entrypoint=tuple(self.entrypoint) if self.entrypoint else None,
            command=tuple(self.command) if self.command else None,
            variables=dict(self.variables),
            docker=self.docker.to_options() if self.docker is not None else None,
            pull_policy=tuple(self.pull_policy),
        )


class InputArtifact(_Message):
    """An upstream job's artifact this job receives (GitLab's needs/dependencies)."""

    job: Name = Field(description="the upstream job that produced it")
    name: Text
    kind: FileKind
    digest: Digest
    size: Size


class Limits(_Message):
    """Resource ceilings of the job's container (the farm's settings decide them)."""

    memory: int = Field(ge=1, le=_INT64, description="bytes")
    cpus: float = Field(gt=0, le=4096, allow_inf_nan=False)
    pids: int = Field(ge=1, le=_INT32)


# --- claim ----------------------------------------------------------------------------


class ClaimRequest(_Versioned):
    """A worker asks for an attempt (``POST /api/v1/worker/jobs/{id}/claim``)."""

    attempt: Attempt
    worker: Name = Field(description="the worker's name (FARM_WORKER_NAME)")


class Assignment(_Versioned):
    """What a worker gets from a successful claim: everything it needs, nothing shared."""

    job_id: Id
    attempt: Attempt
    build_id: Id
    name: Text
    stage: Text
    project: Text
    project_dir: Text = Field(description="where the workspace is mounted in the container")
    image: Text
    image_entrypoint: list[Text] | None = None
    image_docker: DockerEntry | None = None
    image_pull_policy: list[Text] = Field(default_factory=list)
    before_script: list[Text] = Field(default_factory=list)
    script: list[Text] = Field(default_factory=list)
    after_script: list[Text] = Field(default_factory=list)
    variables: dict[Text, Text] = Field(default_factory=dict)
    snapshot_digest: Digest = Field(description="the commit's source tarball")
    inputs: list[InputArtifact] = Field(default_factory=list)
    timeout: int = Field(ge=1, le=_INT32, description="seconds")
    artifacts: ArtifactRules | None = None
    cache: list[CacheEntry] = Field(default_factory=list)
    services: list[ServiceEntry] = Field(default_factory=list)
    coverage: Text | None = Field(default=None, description="the job's coverage: regex")
    masks: list[Text] = Field(
        default_factory=list, description="values masked in the log, longest first"
    )
    limits: Limits
    job_token: JobToken = Field(
        default="",
        description="this attempt's own credential: its log and finish must carry it",
    )


# --- log / heartbeat ------------------------------------------------------------------


class LogRequest(_Versioned):
    """A worker appends output and proves it is alive (``POST …/jobs/{id}/log``)."""

    attempt: Attempt
    job_token: JobToken = Field(default="", description="the token the claim answered")
    data: Annotated[str, StringConstraints(max_length=MAX_LOG_CHUNK)] = ""
    offset: Size | None = Field(
        default=None,
        description=(
            "UTF-8 bytes of this attempt's output the worker sent before this chunk "
            "(absent: unknown); a resent chunk the API already stored starts below its count"
        ),
    )


class LogReply(_Message):
    """Whether the attempt may go on (no cancel, no reassignment) and the log has room."""

    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )

    continue_: bool = Field(alias="continue", description="false: stop the attempt")
    accepted: bool = Field(description="false: the log is full, send no more output")


# --- finish ---------------------------------------------------------------------------


class ArtifactReport(_Message):
    """A blob an attempt uploaded and wants recorded as its artifact."""

    name: Name
    kind: FileKind = "archive"
    digest: Digest
    size: Size
    expire_in: Annotated[int, Field(ge=0, le=_INT64)] | None = Field(
        default=None, description="seconds until it may be collected; None = never"
    )
    files: list[PathText] = Field(default_factory=list, max_length=MAX_FILES)


MAX_FAILED_CASES = 100  # failing test cases kept per job (the totals count them all)
_CaseText = Annotated[str, StringConstraints(max_length=4096)]


class FailedCase(_Message):
    """One failing (or erroring) test case of a JUnit report."""

    name: _CaseText = ""
    classname: _CaseText = ""
    message: _CaseText = ""


class TestReport(_Message):
    """Totals of a job's ``artifacts: reports: junit`` files and its failing cases."""

    __test__ = False  # not a pytest test class, despite its name

    tests: Annotated[int, Field(ge=0, le=_INT32)] = 0
    failures: Annotated[int, Field(ge=0, le=_INT32)] = 0
    errors: Annotated[int, Field(ge=0, le=_INT32)] = 0
    skipped: Annotated[int, Field(ge=0, le=_INT32)] = 0
    time: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    failed: list[FailedCase] = Field(default_factory=list, max_length=MAX_FAILED_CASES)


class LogTail(_Message):
    """The last of an attempt's output, sent with its finish report instead of in a log
    request of its own (most short jobs then cost two requests: claim and finish)."""

    data: Annotated[str, StringConstraints(max_length=MAX_FINISH_LOG)]
    offset: Size | None = Field(
        default=None,
        description="UTF-8 bytes of output sent before it, as in a log request",
    )


class FinishReport(_Versioned):
    """How an attempt ended (``POST …/jobs/{id}/finish``)."""

    attempt: Attempt
    job_token: JobToken = Field(default="", description="the token the claim answered")
    exit_code: int | None = Field(default=None, ge=-_INT32 - 1, le=_INT32)
    reason: FailureReason | None = None
    message: Annotated[str, StringConstraints(max_length=MAX_MESSAGE)] = ""
    artifacts: list[ArtifactReport] = Field(default_factory=list, max_length=MAX_ARTIFACTS)
    coverage: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="from the coverage: regex"
    )
    timeline: dict[TimelineMark, MarkTime] | None = Field(
        default=None, description="worker-side marks of the attempt (epoch seconds)"
    )
    tests: TestReport | None = None  # from artifacts: reports: junit
    log: LogTail | None = Field(
        default=None,
        description="output not sent yet; stored before the report is applied",
    )


class FinishReply(_Message):
    """The job's status and attempt after the report (a new attempt if it is retried)."""

    status: JobStatus
    attempt: Attempt


# --- liveness (the reaper) ------------------------------------------------------------


class LiveRequest(_Versioned):
    """Which of these (job id, attempt) pairs still run? (``POST /api/v1/worker/live``)."""

    attempts: list[tuple[Id, Attempt]] = Field(max_length=MAX_LIVE_PAIRS)


class LiveReply(_Message):
    """One answer per pair asked about, in order."""

    live: list[bool]
