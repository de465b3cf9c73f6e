"""The coordinator's ports: what it needs of storage, the broker and the blob store.

The coordinator decides; these Protocols are how it acts. Production plugs in the
SQLAlchemy store (``farm.db.repository.Store``), the Celery dispatcher
(``farm.worker.app.CeleryDispatcher``) and a registry blob store; unit tests plug in
in-memory fakes (``tests/unit/coordinator/fakes.py``). Nothing here imports a database,
a broker or Docker: implementations satisfy these structurally, and mypy checks that
where they are wired (``farm.api.app``).

The contract every :class:`Store` keeps (and ``tests/integration/db`` checks on the
real one): **every status change is a compare-and-set**. ``cas_job`` and ``cas_build``
apply their fields only when the row's status is one of ``from_statuses`` (and, for a
job, its attempt is ``expect_attempt``) and say whether they did; of two concurrent
callers from the same state exactly one wins. Reads return plain records
(``farm.domain.records``), never live rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol

from farm.domain.records import ArtifactRecord, BuildRecord, JobRecord, NewBuild
from farm.domain.statuses import BuildStatus


class Store(Protocol):
    """Persistence of builds, jobs, resource groups, artifacts and logs, as records."""

    # --- builds ----------------------------------------------------------------------

    def create_build(self, new: NewBuild, status: BuildStatus) -> int:
        """Persist a build and all its jobs (status ``created``, attempt 1) atomically;
        returns the build's id."""

    def get_build(self, build_id: int) -> BuildRecord:
        """A build with its jobs (in definition order) and their artifacts; NotFound if none."""

    def list_builds(
        self, limit: int = 50, project: str | None = None, ref: str | None = None
    ) -> list[BuildRecord]:
        """Newest builds first, without their jobs."""

    def cas_build(self, build_id: int, from_statuses: Iterable[str], **fields: Any) -> bool:
        """Compare-and-set: set ``fields`` only if the build's status is one of
        ``from_statuses``; True when it did (False also for an unknown build)."""

    def update_build(self, build_id: int, **fields: Any) -> None:
        """Unconditional update of non-status fields (never ``status``: that is a CAS)."""

    def active_build_ids(self) -> list[int]:
        """Ids of builds not yet final (``created``/``pending``/``running``), for recovery."""

    # --- jobs ------------------------------------------------------------------------

    def get_job(self, job_id: int) -> JobRecord:
        """One job with its artifacts; NotFound if none."""

    def cas_job(
        self,
        job_id: int,
        from_statuses: Iterable[str],
        expect_attempt: int | None = None,
        **fields: Any,
    ) -> bool:
        """Compare-and-set on a job: applies ``fields`` only if its status is one of
        ``from_statuses`` and (unless None) its attempt is ``expect_attempt``.

        True when it did. Of concurrent callers from the same state, exactly one wins;
        a stale attempt never changes anything.
        """

    def jobs_with_status(self, statuses: Iterable[str]) -> list[JobRecord]:
        """Every job in one of ``statuses``, by id, without artifacts (watchdog, recovery)."""

    # --- resource groups ---------------------------------------------------------------

    def take_resource_group(self, name: str, job_id: int, stale: int | None = None) -> bool:
        """Compare-and-set: make ``job_id`` the holder of ``name`` if the group is free or
        already its own; with ``stale``, only if ``stale`` is the holder (take-over from a
        finished holder). Two takers can never both win."""

    def release_resource_group(self, name: str, job_id: int) -> bool:
        """Compare-and-set: free ``name`` if ``job_id`` holds it; False when it did not."""

    def resource_group_holder(self, name: str) -> int | None:
        """The job holding group ``name``, if any."""

    def builds_waiting_for_group(self, name: str) -> list[int]:
        """Builds with a ``created`` job in group ``name``, oldest waiting job first."""

    def held_resource_groups(self) -> list[tuple[str, int]]:
        """(group, holder job) of every taken group (recovery after a restart)."""

    # --- artifacts and logs ------------------------------------------------------------

    def add_artifact(
        self,
        *,
        build_id: int,
        job_id: int | None,
        name: str,
        kind: str,
        digest: str,
        size: int,
        expires_at: datetime | None = None,
        files: list[str] | None = None,
    ) -> ArtifactRecord:
        """Record a stored blob as an artifact of a build (and of a job, unless None)."""

    def append_log(self, job_id: int, attempt: int, data: str, cap: int) -> bool:
        """Append output of ``attempt`` (ignored for any other attempt). Past ``cap``
        bytes the text is cut and one truncation marker is stored, once.

        Returns False once the log is full (or the attempt is stale): the worker may
        stop sending.
        """


class Dispatcher(Protocol):
    """Hands a job attempt to the workers (Celery in production)."""

    def dispatch(self, job: JobRecord, build: BuildRecord, countdown: float | None = None) -> None:
        """Queue ``run_job(job.id, job.attempt)`` on the job's queue, after ``countdown``
        seconds if given. Delivering twice is harmless: a claim is a compare-and-set."""


class StoredBlob(Protocol):
    """What storing bytes tells the coordinator (``registry.store.BlobInfo`` fits)."""

    @property
    def digest(self) -> str:
        """``sha256:<64 hex>`` of the bytes."""

    @property
    def size(self) -> int:
        """Length in bytes."""


class Blobs(Protocol):
    """The slice of a blob store the coordinator uses (``registry.store.BlobStore`` fits)."""

    def has(self, digest: str) -> bool:
        """Whether a blob with this digest is stored."""

    def put_stream(
        self,
        chunks: Iterable[bytes],
        expected_digest: str | None = None,
        max_size: int | None = None,
    ) -> StoredBlob:
        """Store a stream under its sha256; DigestMismatch or UploadError (too large)
        store nothing."""


__all__ = ["Blobs", "Dispatcher", "Store", "StoredBlob"]
