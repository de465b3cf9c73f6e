"""SQLAlchemy 2 tables. Only the db package sees these; the rest sees records."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base of farm's schema (migrated by Alembic, never create_all in prod)."""


class BuildRow(Base):
    """``builds``: one submitted commit."""

    __tablename__ = "builds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project: Mapped[str] = mapped_column(String(255), index=True)
    repo: Mapped[str] = mapped_column(Text)
    ref: Mapped[str] = mapped_column(String(255), index=True)
    commit: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    pipeline_file: Mapped[str] = mapped_column(String(255))
    pipeline_digest: Mapped[str] = mapped_column(String(80))
    snapshot_digest: Mapped[str] = mapped_column(String(80))
    stages: Mapped[list[str]] = mapped_column(JSON)
    variables: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    deliverable_digest: Mapped[str | None] = mapped_column(String(80), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Masked variables: passed to jobs, masked in logs, never served by the API.
    secrets: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    # A build that runs jobs of another build's pipeline on its behalf (a rollout's deploy
    # or check job): its jobs receive that build's artifacts.
    parent_build_id: Mapped[int | None] = mapped_column(
        ForeignKey("builds.id", ondelete="SET NULL"), nullable=True, index=True
    )
    # What started it (CI_PIPELINE_SOURCE) and, for a webhook build, the git host and
    # project its commit status is reported to; status_seq orders those reports.
    source: Mapped[str] = mapped_column(String(32), default="api", server_default="api")
    origin_host: Mapped[str | None] = mapped_column(String(16), nullable=True)
    origin_api_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    origin_project: Mapped[str | None] = mapped_column(String(255), nullable=True)
    status_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # A branch's or a tag's build (CI_COMMIT_BRANCH / CI_COMMIT_TAG), and the repository's
    # default branch when it was submitted (CI_DEFAULT_BRANCH).
    ref_kind: Mapped[str] = mapped_column(String(16), default="branch", server_default="branch")
    default_branch: Mapped[str] = mapped_column(String(255), default="main", server_default="main")
    # Counts the changes of its jobs' states (status, attempt, exit code, reason): each
    # such update takes the next value under this row's lock and writes it on the job, so
    # a coordinator catches up with what changed since it last read (``job_changes``).
    rev: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class JobRow(Base):
    """``jobs``: one job of a build; every status change is a compare-and-set."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    build_id: Mapped[int] = mapped_column(ForeignKey("builds.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    stage: Mapped[str] = mapped_column(String(255))
    position: Mapped[int] = mapped_column(Integer)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), index=True)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    queue: Mapped[str] = mapped_column(String(255))
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reason: Mapped[str | None] = mapped_column(String(255), nullable=True)
    worker: Mapped[str | None] = mapped_column(String(255), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    lost_count: Mapped[int] = mapped_column(Integer, default=0)
    log_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    coverage: Mapped[float | None] = mapped_column(Float, nullable=True)
    resource_group: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    # The dispatch outbox (coordinator/service.py): set once the broker took this attempt's
    # message (NULL: not sent yet), and the broker incarnation (Redis run_id) it went to.
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    queued_epoch: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # A ``when: delayed`` job's start time: a re-sent message keeps the remaining delay.
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Who holds the attempt (issue 12): the worker token that claimed it and the SHA-256 of
    # the job token handed out with the claim; logs and results must come with both.
    claimed_by_token: Mapped[int | None] = mapped_column(Integer, nullable=True)
    job_token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Issue 11: the attempt's timeline (farm/domain/timeline.py) and, for a job whose
    # result was reused from an earlier identical job, that job's id.
    timeline: Mapped[dict[str, float] | None] = mapped_column(JSON, nullable=True)
    cached_from: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Totals and failing cases of artifacts: reports: junit (messages.TestReport), and the
    # job's environment: (name, url, action) from its spec (migration 0011).
    test_report: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    environment: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # Why a pending job waits with no worker to take it (issue 10): set by the watchdog
    # after FARM_STUCK_AFTER, cleared once a live worker serves its queue.
    stuck_reason: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # The build's ``rev`` when this job's state last changed (migration 0015).
    rev: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    __table_args__ = (Index("ix_jobs_build_rev", "build_id", "rev"),)


class ArtifactRow(Base):
    """``artifacts``: blobs produced by builds, linked to job, build and digest."""

    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    build_id: Mapped[int] = mapped_column(ForeignKey("builds.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), nullable=True, index=True
    )
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(32))
    digest: Mapped[str] = mapped_column(String(80), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    files: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)


class LogChunkRow(Base):
    """``log_chunks``: a job's output in arrival order, per attempt."""

    __tablename__ = "log_chunks"
    __table_args__ = (Index("ix_log_chunks_job_attempt", "job_id", "attempt", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    data: Mapped[str] = mapped_column(Text)


class ResultCacheRow(Base):
    """``result_cache``: a job result key (farm/domain/result_key.py) → the successful job
    whose result, log and artifacts a job with the same key reuses."""

    __tablename__ = "result_cache"

    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CacheRow(Base):
    """``caches``: a project's cache key → the digest of its latest archive (last write wins)."""

    __tablename__ = "caches"
    __table_args__ = (UniqueConstraint("project", "key", name="uq_caches_project_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project: Mapped[str] = mapped_column(String(255))
    key: Mapped[str] = mapped_column(String(255))
    digest: Mapped[str] = mapped_column(String(80))
    size: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ResourceGroupRow(Base):
    """``resource_groups``: a group's current holder; taken and released by compare-and-set."""

    __tablename__ = "resource_groups"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    # NULL when free. Taking is ``UPDATE … SET holder_job_id=? WHERE name=? AND holder IS NULL``.
    holder_job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ReleaseRow(Base):
    """``releases``: an immutable (project, version) → green build and its deliverable."""

    __tablename__ = "releases"
    __table_args__ = (UniqueConstraint("project", "version", name="uq_releases_project_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project: Mapped[str] = mapped_column(String(255), index=True)
    version: Mapped[str] = mapped_column(String(128))
    # RESTRICT: a released build's row (and so its blobs' references) must outlive it.
    build_id: Mapped[int] = mapped_column(ForeignKey("builds.id", ondelete="RESTRICT"), index=True)
    ref: Mapped[str] = mapped_column(String(255))
    commit: Mapped[str] = mapped_column(String(64))
    deliverable_digest: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RolloutRow(Base):
    """``rollouts``: one release's staged rollout; every change is a CAS on ``revision``.

    ``snapshot`` is :class:`farm.rollout.state.RolloutSnapshot` as JSON; ``state`` and
    ``step`` repeat it for queries. ``active`` is true while the rollout holds its
    project (progressing, paused, stepped_back): a partial unique index lets at most one
    rollout of a project hold it, so two starts can never both win. ``phase`` (deploy,
    bake, check) and ``phase_until`` are the controller's place inside the current step,
    persisted so a restarted coordinator resumes a bake where it was.
    """

    __tablename__ = "rollouts"
    __table_args__ = (
        Index(
            "uq_rollouts_active_project",
            "project",
            unique=True,
            sqlite_where=text("active"),
            postgresql_where=text("active"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project: Mapped[str] = mapped_column(String(255), index=True)
    release_id: Mapped[int] = mapped_column(
        ForeignKey("releases.id", ondelete="RESTRICT"), index=True
    )
    version: Mapped[str] = mapped_column(String(128))
    previous_version: Mapped[str | None] = mapped_column(String(128), nullable=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    step: Mapped[int] = mapped_column(Integer)
    revision: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean)
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)
    phase: Mapped[str] = mapped_column(String(16))
    phase_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    job_build_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    checks: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    actor: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RolloutEventRow(Base):
    """``rollout_events``: a rollout's append-only history (who, when, from, to, why)."""

    __tablename__ = "rollout_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rollout_id: Mapped[int] = mapped_column(
        ForeignKey("rollouts.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(255))
    event: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    from_step: Mapped[int] = mapped_column(Integer)
    to_step: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    figures: Mapped[dict[str, Any]] = mapped_column(JSON)


class HookDeliveryRow(Base):
    """``hook_deliveries``: one webhook delivery taken, by its id (``github:<X-GitHub-Delivery>``,
    ``gitlab:<X-Gitlab-Event-UUID>``); unique, so a replayed delivery builds nothing twice.

    The row is claimed before the build is submitted (``build_id`` still null) and
    released again when the submission fails, so a redelivery can retry it.
    """

    __tablename__ = "hook_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery: Mapped[str] = mapped_column(String(255), unique=True)
    host: Mapped[str] = mapped_column(String(16))
    event: Mapped[str] = mapped_column(String(64))
    build_id: Mapped[int | None] = mapped_column(
        ForeignKey("builds.id", ondelete="SET NULL"), nullable=True, index=True
    )
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TokenRow(Base):
    """``api_tokens``: an API token's SHA-256 (never the token), its scopes and lifetime."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # the first characters, to tell tokens apart
    scopes: Mapped[str] = mapped_column(String(255))  # comma-separated, as granted
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ProjectSecretRow(Base):
    """``project_secrets``: a project's secret variables, each value its own Fernet token
    (bound to the row's project, name and flags: see :meth:`farm.db.secrets.SecretBox.seal_value`).
    """

    __tablename__ = "project_secrets"
    __table_args__ = (UniqueConstraint("project", "name", name="uq_project_secrets_project_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[str] = mapped_column(String(255))
    value: Mapped[str] = mapped_column(Text)  # a Fernet token, never the plain value
    protected: Mapped[bool] = mapped_column(Boolean)
    masked: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ProjectSettingsRow(Base):
    """``project_settings``: the repository a project's secrets are bound to, and its
    protected branch/tag patterns (fnmatch).

    ``repo`` NULL: bound to no repository (its builds get none of its secrets);
    ``protected_refs`` NULL: the default (``main``, ``master``), an empty list protects
    nothing.  No row: both NULL.
    """

    __tablename__ = "project_settings"

    project: Mapped[str] = mapped_column(String(255), primary_key=True)
    repo: Mapped[str | None] = mapped_column(Text, nullable=True)  # as the admin gave it
    protected_refs: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ScheduleRow(Base):
    """``schedules``: build a project's ref on a cron timetable (GitLab pipeline schedules)."""

    __tablename__ = "schedules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project: Mapped[str] = mapped_column(String(255), index=True)
    repo: Mapped[str] = mapped_column(Text)
    ref: Mapped[str] = mapped_column(String(255))
    cron: Mapped[str] = mapped_column(String(255))
    timezone: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(String(255), default="")
    variables: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # The next run, whole seconds UTC (NULL while paused). Timers claim a due run with a
    # compare-and-set on this column, so one process fires it.
    next_run_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True, index=True
    )
    last_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_build_id: Mapped[int | None] = mapped_column(
        ForeignKey("builds.id", ondelete="SET NULL"), nullable=True
    )
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class WorkerRow(Base):
    """``workers``: the last heartbeat of each worker (``POST /api/v1/worker/heartbeat``)."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    queues: Mapped[list[str]] = mapped_column(JSON, default=list)
    slots: Mapped[int] = mapped_column(Integer, default=1)
    running: Mapped[list[int]] = mapped_column(JSON, default=list)  # job ids
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
