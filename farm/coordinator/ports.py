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
(``farm.domain.records``), never live rows. The bulk forms (``cas_jobs``,
``cas_jobs_of_build``) apply the same WHERE to many rows in one statement and say which
rows changed.

The dispatch outbox: a job made ``pending`` has no ``queued_at`` until the broker took
its message (``mark_queued``); ``outbox`` finds pending jobs whose message may be missing.
A dispatcher that can also describe its broker (:class:`BrokerProbe`) lets the
coordinator notice messages lost with the broker (``coordinator/service.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from farm.domain.logs import Tail
from farm.domain.progress import JobState
from farm.domain.records import ArtifactRecord, BuildRecord, JobRecord, NewBuild
from farm.domain.statuses import BuildStatus


class Queued(Protocol):
    """A pending job in the outbox, with what is known of its message."""

    @property
    def job(self) -> JobRecord:
        """The job (its current attempt is the one to send)."""

    @property
    def queued_at(self) -> datetime | None:
        """When the broker took the attempt's message; None: never (send it)."""

    @property
    def queued_epoch(self) -> str | None:
        """The broker incarnation it was sent to (:meth:`BrokerProbe.broker_epoch`)."""

    @property
    def due_at(self) -> datetime | None:
        """When a delayed job may start (a re-send keeps the rest of the delay)."""


class Store(Protocol):
    """Persistence of builds, jobs, resource groups, artifacts and logs, as records."""

    # --- builds ----------------------------------------------------------------------

    def create_build(self, new: NewBuild, status: BuildStatus) -> int:
        """Persist a build and all its jobs (status ``created``, attempt 1) atomically;
        returns the build's id."""

    def get_build(self, build_id: int, with_jobs: bool = True) -> BuildRecord:
        """A build with its jobs (in definition order) and their artifacts; NotFound if none.

        ``with_jobs=False``: the build's own fields only (``jobs`` is empty)."""

    def list_builds(
        self,
        limit: int = 50,
        project: str | None = None,
        ref: str | None = None,
        status: str | None = None,
        offset: int = 0,
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

    def job_ids(self, build_id: int) -> list[int]:
        """The ids of a build's jobs, in definition order."""

    def job_changes(self, build_id: int, after: int) -> tuple[int, Sequence[JobState]]:
        """The build's change number now, and its jobs whose state (status, attempt, exit
        code, reason) changed after change number ``after`` — every job when ``after`` is
        negative — in definition order. Jobs changed later may be included as well."""

    def cas_jobs(
        self, job_ids: Iterable[int], from_statuses: Iterable[str], **fields: Any
    ) -> list[int]:
        """Bulk :meth:`cas_job` (no attempt check): the ids of the jobs that changed."""

    def cas_jobs_of_build(
        self, build_id: int, from_statuses: Iterable[str], **fields: Any
    ) -> list[int]:
        """One compare-and-set over every job of a build in ``from_statuses`` (a cancel);
        the ids of the jobs that changed."""

    def jobs_with_status(self, statuses: Iterable[str]) -> list[JobRecord]:
        """Every job in one of ``statuses``, by id, without artifacts (watchdog, recovery)."""

    def last_durations(self, project: str, names: Iterable[str]) -> dict[str, float]:
        """For each of ``names``: seconds from claim to finish of the latest successful
        job of that name in ``project`` that ran (not reused); names never seen are left
        out (critical-path-first dispatch, ``coordinator/dispatch_order.py``)."""

    # --- the dispatch outbox -------------------------------------------------------------

    def outbox(
        self,
        *,
        epoch: str | None,
        stale_before: datetime | None,
        after_id: int = 0,
        limit: int = 500,
    ) -> Sequence[Queued]:
        """Pending jobs (by id, from ``after_id`` on) whose message may be missing: never
        queued; queued to a broker ``epoch`` other than this one (if given); queued and
        due before ``stale_before`` (if given)."""

    def mark_queued(
        self, attempts: Iterable[tuple[int, int]], at: datetime, epoch: str | None
    ) -> None:
        """The broker took the messages of these (job, attempt): record ``at`` and
        ``epoch`` on those still in that attempt, pending or already claimed (a claim may
        beat this write; ``at`` is then the timeline's ``queued`` mark)."""

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

    def set_timelines(self, items: Iterable[tuple[int, int, dict[str, float]]]) -> None:
        """Store each (job, attempt, timeline) whose job is still at that attempt."""

    def claim_job(self, job_id: int, attempt: int, **fields: Any) -> JobRecord | None:
        """Compare-and-set a pending ``attempt`` to ``fields`` and return the job as it is
        then (without artifacts); None if the attempt was not pending."""

    def finish_attempt(
        self,
        job_id: int,
        attempt: int,
        artifacts: Sequence[Mapping[str, Any]],
        tail: Tail | None = None,
        **fields: Any,
    ) -> bool:
        """In one transaction: the compare-and-set of a running ``attempt`` to ``fields``
        and, if it applied, its ``artifacts`` (each as :meth:`add_artifact`'s keywords
        but the build and job) and the log's ``tail`` (as :meth:`beat_and_log` stores
        text). False, with nothing written, if the attempt was not running."""

    def beat_and_log(
        self, job_id: int, attempt: int, at: datetime, data: str, cap: int, offset: int | None
    ) -> tuple[bool, bool]:
        """One transaction: record a heartbeat ``at`` if ``attempt`` is running (alive?),
        then append ``data`` to the attempt's log when there is any (accepted? True
        without data; False for a stale attempt's, and once the log is full). Past
        ``cap`` bytes the text is cut and one truncation marker is stored, once."""


class Dispatcher(Protocol):
    """Hands a job attempt to the workers (Celery in production)."""

    def dispatch(self, job: JobRecord, build: BuildRecord, countdown: float | None = None) -> None:
        """Queue ``run_job(job.id, job.attempt)`` on the job's queue, after ``countdown``
        seconds if given. Delivering twice is harmless: a claim is a compare-and-set."""


@runtime_checkable
class BrokerProbe(Protocol):
    """What a dispatcher may also tell about its broker (the Celery one on Redis does).

    Without it the coordinator re-sends only what was never sent, plus every pending job
    after its own restart (as it always did)."""

    def broker_epoch(self) -> str | None:
        """An id of the broker's current incarnation (Redis ``run_id``): it changes when
        the broker restarts, and with it every message it held may be gone. None when the
        broker cannot say; raises when it cannot be reached."""

    def queue_length(self, queue: str) -> int | None:
        """Messages waiting in ``queue`` (not those a worker holds); None when unknown."""


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


__all__ = ["Blobs", "BrokerProbe", "Dispatcher", "JobState", "Queued", "Store", "StoredBlob"]
