"""One typed settings object for every farm process (``FARM_`` environment prefix).

Built by :func:`get_settings`, never at import, so tests and ``farm up`` can set
the environment first. Embedded defaults make a single machine work with nothing
configured: SQLite and artifacts under one data dir, Redis on loopback.
"""

from __future__ import annotations

import os
import socket
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    # Root installs behave like a service; a user's farm keeps to their home.
    if os.geteuid() == 0:
        return Path("/var/lib/farm")
    return Path.home() / ".local" / "share" / "farm"


def local_token_path(data_dir: Path, role: str) -> Path:
    """Where a one-host farm keeps its local ``admin`` or ``worker`` token (mode 0600)."""
    return data_dir / "tokens" / f"{role}.token"


class Settings(BaseSettings):
    """Every knob of a farm process. See README's configuration reference."""

    model_config = SettingsConfigDict(env_prefix="FARM_", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir)
    database_url: str | None = None  # default: sqlite under data_dir
    broker_url: str = "redis://127.0.0.1:6379/0"
    result_backend: str | None = None  # results are reported over HTTP; none needed
    api_host: str = "127.0.0.1"
    api_port: int = 8700
    api_url: str | None = None  # what clients and workers use; default from host/port
    flower_port: int = 5555
    # Log level of the API and the workers (Celery's "received"/"succeeded" lines per
    # task are INFO: WARNING keeps a busy farm's logs, and its CPU, to what matters).
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # Worker side
    work_dir: Path | None = None  # per-job workspaces; default data_dir/work
    worker_name: str = Field(default_factory=socket.gethostname)
    worker_tags: list[str] = Field(default_factory=list)
    worker_run_untagged: bool = False  # a tagged worker takes untagged jobs too (GitLab's)
    # Air-gapped farms have no registry: images a pipeline names that are missing
    # locally fall back to these local images (glob → image). Only exact equivalents
    # by default; extend with FARM_IMAGE_ALIASES='{"python:3*": "farm/python:3.11"}'.
    image_aliases: dict[str, str] = Field(
        default_factory=lambda: {
            "python:3.11*": "farm/python:3.11",
            "debian:bookworm*": "farm/debian:bookworm",
            "debian:12*": "farm/debian:bookworm",
            "busybox*": "farm/busybox:latest",
        }
    )
    # Try a registry pull for an image missing here before the aliases above. Off: no
    # registry is assumed, and a pull attempt alone sends DNS queries off this host.
    image_pull: bool = False
    job_network: str = "none"  # "none" or "host": the farm decides, never the job

    # Job defaults (a job may lower them, never raise them above these)
    job_timeout: int = 3600
    job_memory: int = 2 * 1024**3
    job_cpus: float = 2.0
    job_pids: int = 1024
    log_max_bytes: int = 4 * 1024 * 1024
    # What one pipeline may expand to (farm.domain.specs.PipelineLimits), checked while it
    # loads, before anything is stored; a pipeline over one is refused with a 422 naming it.
    pipeline_max_aliases: int = Field(default=20_000, ge=1)  # YAML aliases followed
    pipeline_max_nodes: int = Field(default=200_000, ge=1)  # YAML nodes, aliases followed
    pipeline_max_script_lines: int = Field(default=100_000, ge=1)  # all jobs' script lines
    pipeline_max_jobs: int = Field(default=2_000, ge=1)
    pipeline_max_job_bytes: int = Field(default=1024**2, ge=1024)  # one job's stored spec
    pipeline_max_bytes: int = Field(default=16 * 1024**2, ge=1024)  # all specs; all YAML read
    pipeline_max_includes: int = Field(default=150, ge=0)  # files merged by include:
    component_catalog: Path | None = None  # FARM_COMPONENT_CATALOG: include:component
    max_blob_bytes: int = 10 * 1024**3
    # Request bodies from the network are refused (413) past these before being read;
    # the blob routes stream to the store and are capped by max_blob_bytes instead.
    max_request_bytes: int = Field(default=4 * 1024**2, ge=1024)  # JSON: builds, releases...
    # A worker's log chunk (up to 4 Mi characters, escaped) or finish report (file lists).
    max_worker_request_bytes: int = Field(default=128 * 1024**2, ge=1024)

    # Coordinator
    job_lease_seconds: int = 30  # a running job without heartbeat this long is retried
    max_lost_retries: int = 2  # redeliveries after lost workers before the job fails
    watchdog_interval: float = 5.0
    # The dispatch outbox (coordinator/service.py), swept by every watchdog pass: jobs whose
    # message could not be published are re-sent, at most this many seconds apart while
    # the broker cannot be reached; a published job nobody claimed this long after it was
    # due is sent again when its queue is empty (its message was lost).
    dispatch_retry_max: float = 30.0
    requeue_after: float = 300.0
    reap_interval: float = 30.0
    # Worker fences (issue 16): a job container whose worker stopped renewing its lease
    # file this long kills itself (at most half of job_lease_seconds is used, so it is
    # dead before the coordinator retries the job); an attempt's log and result are
    # spooled on the worker's disk and re-sent this long while the API does not take them.
    container_lease_seconds: float = Field(default=10.0, ge=3.0)
    spool_patience: float = Field(default=3600.0, ge=0.0)
    # Verified blobs (snapshots, upstream artifacts) a worker keeps by digest in its work
    # dir, so the jobs of a build do not each download them again (0: off).
    worker_blob_cache_bytes: int = Field(default=2 * 1024**3, ge=0)
    # `farm up` restarts a dead child after backoff_initial seconds, doubling up to
    # backoff_max (back to the start once it stayed up stable_after); crash_deaths deaths of
    # one child within crash_window seconds stop the whole farm (farm/cli/supervise.py).
    supervise_backoff_initial: float = Field(default=1.0, gt=0)
    supervise_backoff_max: float = Field(default=30.0, gt=0)
    supervise_stable_after: float = Field(default=60.0, gt=0)
    supervise_crash_deaths: int = Field(default=5, gt=0)
    supervise_crash_window: float = Field(default=120.0, gt=0)

    # Registry: where blobs live, how long unreferenced ones survive, who signs provenance
    blob_store: Literal["fs", "s3"] = "fs"
    # The data plane: whole-blob GET/PUT on a port of its own, moved by the kernel
    # (sendfile/splice) instead of through the ASGI server; filesystem store only.
    blob_data_plane: bool = True
    blob_port: int | None = None  # default: the API port + 1; 0 picks a free port (tests)
    blob_data_url: str | None = None  # as clients must use it; default: API's host + blob_port
    s3_endpoint: str | None = None  # e.g. http://127.0.0.1:9000 (MinIO); None = AWS default
    s3_bucket: str = "farm"
    s3_prefix: str = ""  # key prefix inside the bucket, e.g. "farm/"
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None  # None: boto3's usual credential chain
    s3_secret_access_key: SecretStr | None = None
    gc_grace_seconds: int = 3600  # unreferenced blobs younger than this are kept (uploads race GC)
    provenance_builder_id: str | None = None  # SLSA builder.id; default from the API URL
    # Secrets at rest: a Fernet key (several comma-separated to rotate: the first encrypts,
    # all decrypt); None = the key file $FARM_DATA_DIR/keys/secrets.key made on first start.
    secret_key: SecretStr | None = None

    # Access (README "Security"): every route but /healthz, /openapi.json, the docs, the
    # webhooks and the dashboard's login page needs an API token with the right scope.
    # FARM_AUTH=false (anyone may do anything) is refused unless the API binds loopback.
    auth: bool = True
    # What the CLI and workers present (Authorization: Bearer); default: the local token
    # file `farm up` wrote under the data dir (tokens/admin.token, tokens/worker.token).
    token: SecretStr | None = None
    # The API writes those local token files on start (one-host farms); a multi-host
    # farm turns it off and hands out tokens made with `farm token create`.
    local_tokens: bool = True
    # A submitted `repo` that is a path on the coordinator's disk needs this scope.
    local_repo_scope: Literal["admin", "submit"] = "admin"
    token_cache_seconds: float = Field(default=5.0, ge=0.0)  # a revoke takes this long at most

    # Rollouts: how often the engine looks at progressing rollouts, and which proxies may
    # tell the deliver endpoint a client's address in X-Forwarded-For (nginx's `proxy`).
    rollout_tick: float = 0.5
    trusted_proxies: list[str] = Field(default_factory=list)

    # Webhooks (POST /api/v1/hooks/github, /api/v1/hooks/gitlab): each endpoint is off
    # (404) until its secret is set. The payload's clone URL must use one of these
    # schemes, so a webhook never builds a path on the coordinator's disk (tests add "file").
    github_webhook_secret: SecretStr | None = None
    gitlab_webhook_token: SecretStr | None = None
    hook_allowed_url_schemes: list[str] = Field(
        default_factory=lambda: ["https", "http", "ssh", "git"]
    )
    # Commit statuses (farm/githost/status.py): a webhook build's status goes back to its
    # host while a token for that host is set (on the API, which sends, and on the workers,
    # which deliver; a token never travels in a message). GitLab's API base URL is
    # gitlab_url, else taken from the webhook payload's project web_url. schedule_tick:
    # seconds between the API's looks for due pipeline schedules.
    github_api_url: str = "https://api.github.com"
    github_status_token: SecretStr | None = None
    gitlab_url: str | None = None
    gitlab_status_token: SecretStr | None = None
    status_context: str = "farm"
    status_timeout: float = Field(default=10.0, gt=0)  # one delivery's HTTP timeout
    status_max_retries: int = Field(default=8, ge=0)  # backoff 1 s doubling, 5 min at most
    schedule_tick: float = Field(default=10.0, gt=0)

    # Scaling out (issue 10): workers send a heartbeat (name, host, tags, queues, slots,
    # running jobs) every worker_heartbeat seconds; one silent worker_timeout seconds is
    # not live. A pending job no live worker can take shows "stuck: ..." after stuck_after.
    # executor: "docker", or "noop" (starts no container; for benchmarks only).
    worker_heartbeat: float = Field(default=5.0, gt=0)
    worker_timeout: float = Field(default=20.0, gt=0)
    stuck_after: float = Field(default=30.0, ge=0)
    executor: Literal["docker", "noop"] = "docker"

    @property
    def resolved_api_url(self) -> str:
        """The API base URL clients and workers talk to."""
        return (self.api_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")

    @property
    def resolved_blob_port(self) -> int:
        """The blob data plane's port: ``FARM_BLOB_PORT``, else the API port + 1."""
        return self.api_port + 1 if self.blob_port is None else self.blob_port

    @property
    def resolved_database_url(self) -> str:
        """SQLAlchemy URL; SQLite in the data dir unless configured."""
        return self.database_url or f"sqlite:///{self.data_dir / 'farm.db'}"

    @property
    def blob_dir(self) -> Path:
        """Root of the filesystem blob store."""
        return self.data_dir / "registry"

    @property
    def key_dir(self) -> Path:
        """Where the farm keeps its provenance signing key (created on first start)."""
        return self.data_dir / "keys"

    def client_token(self, role: Literal["admin", "worker"]) -> str | None:
        """The token a CLI (``admin``) or worker presents: FARM_TOKEN, else the local file."""
        if self.token is not None:
            return self.token.get_secret_value().strip() or None
        try:
            return local_token_path(self.data_dir, role).read_text().strip() or None
        except OSError:  # no local farm, or not ours to read
            return None

    @property
    def resolved_work_dir(self) -> Path:
        """Where a worker lays out job workspaces."""
        return self.work_dir or self.data_dir / "work"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment once."""
    return Settings()
