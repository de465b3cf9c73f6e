"""In-memory fakes of the coordinator's ports, for fast unit tests of its logic.

Small and honest: the CAS methods really compare and set (status set, attempt), logs
are capped with the real store's marker, reads return fresh frozen records. They are
not a second database: the real store keeps its own contract tests
(``tests/integration/db``). ``_conforms`` at the bottom makes mypy fail if a fake drifts
from :mod:`farm.coordinator.ports`.

``FakeStore.calls`` counts calls of each port method, so tests can check that the
coordinator's work per step does not grow with the size of a build.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from farm.coordinator.ports import Blobs, BrokerProbe, Dispatcher, Store
from farm.domain.clock import utcnow
from farm.domain.logs import Tail, fit_chunk
from farm.domain.records import ArtifactRecord, BuildRecord, JobRecord, NewBuild
from farm.domain.statuses import ACTIVE_BUILD, BuildStatus, JobStatus
from farm.errors import DigestMismatch, NotFound, UploadError
from farm.registry.store.digests import BlobInfo

_PORT = frozenset(n for n in dir(Store) if not n.startswith("_"))
# Job columns the records do not carry (the outbox's, a delayed job's due time).
# Columns kept beside the records (the outbox, and who holds an attempt).
_OUTBOX_COLUMNS = frozenset(
    {"queued_at", "queued_epoch", "due_at", "claimed_by_token", "job_token_hash"}
)


@dataclass(frozen=True)
class State:
    """``ports.JobState``."""

    id: int
    status: str
    attempt: int
    exit_code: int | None
    reason: str | None


@dataclass(frozen=True)
class Outboxed:
    """``ports.Queued``."""

    job: JobRecord
    queued_at: datetime | None
    queued_epoch: str | None
    due_at: datetime | None


class FakeStore:
    """Builds, jobs, groups, artifacts and logs in dicts; one lock makes each call atomic."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()  # port method -> how many times it was called
        self._lock = threading.Lock()
        self._builds: dict[int, BuildRecord] = {}  # stored without jobs
        self._jobs: dict[int, JobRecord] = {}  # stored without artifacts
        self._outbox: dict[int, dict[str, Any]] = {}  # job -> its _OUTBOX_COLUMNS
        self._artifacts: list[ArtifactRecord] = []
        self._groups: dict[str, int | None] = {}
        self.logs: dict[tuple[int, int], list[str]] = {}  # (job, attempt) -> chunks
        self._next_build = 1
        self._next_job = 1

    def __getattribute__(self, name: str) -> Any:
        if name in _PORT:
            object.__getattribute__(self, "calls")[name] += 1
        return object.__getattribute__(self, name)

    # --- builds ----------------------------------------------------------------------

    def create_build(self, new: NewBuild, status: BuildStatus) -> int:
        with self._lock:
            build_id = self._next_build
            self._next_build += 1
            self._builds[build_id] = BuildRecord(
                id=build_id,
                project=new.project,
                repo=new.repo,
                ref=new.ref,
                commit=new.commit,
                status=BuildStatus(status),
                created_at=utcnow(),
                pipeline_file=new.pipeline_file,
                pipeline_digest=new.pipeline_digest,
                snapshot_digest=new.snapshot_digest,
                stages=tuple(new.stages),
                variables=dict(new.variables),
                secrets=dict(new.secrets),
            )
            ids = range(self._next_job, self._next_job + len(new.jobs))
            self._next_job += len(new.jobs)
            self._jobs.update((j.id, j) for j in new.job_records(build_id, ids))
            return build_id

    def get_build(self, build_id: int, with_jobs: bool = True) -> BuildRecord:
        with self._lock:
            build = self._builds.get(build_id)
            if build is None:
                raise NotFound(f"build {build_id} does not exist")
            if not with_jobs:
                return build
            jobs = sorted(
                (j for j in self._jobs.values() if j.build_id == build_id),
                key=lambda j: j.position,
            )
            return dataclasses.replace(build, jobs=tuple(self._with_artifacts(j) for j in jobs))

    def list_builds(
        self,
        limit: int = 50,
        project: str | None = None,
        ref: str | None = None,
        status: str | None = None,
        offset: int = 0,
    ) -> list[BuildRecord]:
        with self._lock:
            found = [
                b
                for b in sorted(self._builds.values(), key=lambda b: -b.id)
                if (not project or b.project == project)
                and (not ref or b.ref == ref)
                and (not status or b.status == status)
            ]
            return found[offset : offset + limit]

    def cas_build(self, build_id: int, from_statuses: Iterable[str], **fields: Any) -> bool:
        with self._lock:
            build = self._builds.get(build_id)
            if build is None or build.status not in set(from_statuses):
                return False
            self._builds[build_id] = _set(build, fields, BuildStatus)
            return True

    def update_build(self, build_id: int, **fields: Any) -> None:
        with self._lock:
            build = self._builds.get(build_id)
            if build is not None:
                self._builds[build_id] = _set(build, fields, BuildStatus)

    def active_build_ids(self) -> list[int]:
        with self._lock:
            return [b.id for b in self._builds.values() if b.status in ACTIVE_BUILD]

    # --- jobs ------------------------------------------------------------------------

    def get_job(self, job_id: int) -> JobRecord:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise NotFound(f"job {job_id} does not exist")
            return self._with_artifacts(job)

    def cas_job(
        self,
        job_id: int,
        from_statuses: Iterable[str],
        expect_attempt: int | None = None,
        **fields: Any,
    ) -> bool:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.status not in set(from_statuses):
                return False
            if expect_attempt is not None and job.attempt != expect_attempt:
                return False
            self._set_job(job, fields)
            return True

    def _set_job(self, job: JobRecord, fields: dict[str, Any]) -> None:
        extra = {k: v for k, v in fields.items() if k in _OUTBOX_COLUMNS}
        self._outbox.setdefault(job.id, {}).update(extra)
        rest = {k: v for k, v in fields.items() if k not in _OUTBOX_COLUMNS}
        self._jobs[job.id] = _set(job, rest, JobStatus)

    def _states(self, build_id: int) -> list[State]:
        with self._lock:
            jobs = sorted(
                (j for j in self._jobs.values() if j.build_id == build_id),
                key=lambda j: j.position,
            )
            return [State(j.id, j.status, j.attempt, j.exit_code, j.reason) for j in jobs]

    def job_ids(self, build_id: int) -> list[int]:
        return [s.id for s in self._states(build_id)]

    def job_changes(self, build_id: int, after: int) -> tuple[int, list[State]]:
        # Every job, each time: a superset of what changed, which the port allows (tests
        # poke jobs directly, so a counter could miss their changes).
        return after + 1, self._states(build_id)

    def cas_jobs(
        self, job_ids: Iterable[int], from_statuses: Iterable[str], **fields: Any
    ) -> list[int]:
        wanted = set(from_statuses)
        with self._lock:
            done = []
            for job_id in job_ids:
                job = self._jobs.get(job_id)
                if job is not None and job.status in wanted:
                    self._set_job(job, fields)
                    done.append(job_id)
            return done

    def cas_jobs_of_build(
        self, build_id: int, from_statuses: Iterable[str], **fields: Any
    ) -> list[int]:
        wanted = set(from_statuses)
        with self._lock:
            done = []
            for job in sorted(self._jobs.values(), key=lambda j: j.id):
                if job.build_id == build_id and job.status in wanted:
                    self._set_job(job, fields)
                    done.append(job.id)
            return done

    def jobs_with_status(self, statuses: Iterable[str]) -> list[JobRecord]:
        wanted = set(statuses)
        with self._lock:
            return [j for _, j in sorted(self._jobs.items()) if j.status in wanted]

    def last_durations(self, project: str, names: Iterable[str]) -> dict[str, float]:
        wanted = set(names)
        out: dict[str, float] = {}
        with self._lock:
            for job in sorted(self._jobs.values(), key=lambda j: j.id):
                build = self._builds.get(job.build_id)
                if (
                    build is None
                    or build.project != project
                    or job.name not in wanted
                    or job.status != JobStatus.SUCCESS
                    or job.cached_from is not None
                    or job.started_at is None
                    or job.finished_at is None
                ):
                    continue
                out[job.name] = max(0.0, (job.finished_at - job.started_at).total_seconds())
        return out

    # --- the dispatch outbox -------------------------------------------------------------

    def outbox(
        self,
        *,
        epoch: str | None,
        stale_before: datetime | None,
        after_id: int = 0,
        limit: int = 500,
    ) -> list[Outboxed]:
        out: list[Outboxed] = []
        with self._lock:
            for job_id, job in sorted(self._jobs.items()):
                if job_id <= after_id or job.status != JobStatus.PENDING:
                    continue
                o = self._outbox.get(job_id, {})
                at, ep, due = o.get("queued_at"), o.get("queued_epoch"), o.get("due_at")
                stale = (
                    stale_before is not None
                    and at is not None
                    and at < stale_before
                    and (due is None or due < stale_before)
                )
                if at is None or (epoch is not None and ep != epoch) or stale:
                    out.append(Outboxed(job, at, ep, due))
                if len(out) == limit:
                    break
            return out

    def mark_queued(
        self, attempts: Iterable[tuple[int, int]], at: datetime, epoch: str | None
    ) -> None:
        with self._lock:
            for job_id, attempt in attempts:
                job = self._jobs.get(job_id)
                if job is not None and job.attempt == attempt:
                    self._outbox.setdefault(job_id, {}).update(queued_at=at, queued_epoch=epoch)

    def outbox_of(self, job_id: int) -> dict[str, Any]:
        """The job's outbox columns (tests)."""
        with self._lock:
            return dict(self._outbox.get(job_id, {}))

    def backdate_queued(self, job_id: int, seconds: float) -> None:
        """Make a job's message (and due time) ``seconds`` older (instead of sleeping)."""
        with self._lock:
            o = self._outbox.setdefault(job_id, {})
            for key in ("queued_at", "due_at"):
                if o.get(key) is not None:
                    o[key] -= timedelta(seconds=seconds)

    # --- resource groups ---------------------------------------------------------------

    def take_resource_group(self, name: str, job_id: int, stale: int | None = None) -> bool:
        with self._lock:
            holder = self._groups.setdefault(name, None)
            ok = holder == stale if stale is not None else holder in (None, job_id)
            if ok:
                self._groups[name] = job_id
            return ok

    def release_resource_group(self, name: str, job_id: int) -> bool:
        with self._lock:
            if self._groups.get(name) != job_id:
                return False
            self._groups[name] = None
            return True

    def resource_group_holder(self, name: str) -> int | None:
        with self._lock:
            return self._groups.get(name)

    def builds_waiting_for_group(self, name: str) -> list[int]:
        with self._lock:
            first: dict[int, int] = {}
            for job in self._jobs.values():
                if job.spec.resource_group == name and job.status == JobStatus.CREATED:
                    first[job.build_id] = min(first.get(job.build_id, job.id), job.id)
            return sorted(first, key=first.__getitem__)

    def held_resource_groups(self) -> list[tuple[str, int]]:
        with self._lock:
            return [(n, h) for n, h in self._groups.items() if h is not None]

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
        with self._lock:
            art = ArtifactRecord(
                id=len(self._artifacts) + 1,
                build_id=build_id,
                job_id=job_id,
                name=name,
                kind=kind,
                digest=digest,
                size=size,
                created_at=utcnow(),
                expires_at=expires_at,
                files=tuple(files or ()),
            )
            self._artifacts.append(art)
            return art

    def artifacts_of_build(self, build_id: int) -> list[ArtifactRecord]:
        """Every artifact row of a build, the deliverable (job None) included (tests)."""
        with self._lock:
            return [a for a in self._artifacts if a.build_id == build_id]

    def set_timelines(self, items: Iterable[tuple[int, int, dict[str, float]]]) -> None:
        with self._lock:
            for job_id, attempt, timeline in items:
                job = self._jobs[job_id]
                if job.attempt == attempt:
                    self._jobs[job_id] = dataclasses.replace(job, timeline=timeline)

    def claim_job(self, job_id: int, attempt: int, **fields: Any) -> JobRecord | None:
        if not self.cas_job(job_id, [JobStatus.PENDING], expect_attempt=attempt, **fields):
            return None
        return dataclasses.replace(self.get_job(job_id), artifacts=())

    def finish_attempt(
        self,
        job_id: int,
        attempt: int,
        artifacts: Sequence[Mapping[str, Any]],
        tail: Tail | None = None,
        **fields: Any,
    ) -> bool:
        if not self.cas_job(job_id, [JobStatus.RUNNING], expect_attempt=attempt, **fields):
            return False
        if tail is not None and tail.data:
            self._append_log(job_id, attempt, tail.data, tail.cap, tail.offset)
        build_id = self._jobs[job_id].build_id
        for art in artifacts:
            self.add_artifact(build_id=build_id, job_id=job_id, **art)
        return True

    def beat_and_log(
        self, job_id: int, attempt: int, at: datetime, data: str, cap: int, offset: int | None
    ) -> tuple[bool, bool]:
        alive = self.cas_job(job_id, [JobStatus.RUNNING], expect_attempt=attempt, heartbeat_at=at)
        return alive, self._append_log(job_id, attempt, data, cap, offset) if data else True

    def _append_log(
        self, job_id: int, attempt: int, data: str, cap: int, offset: int | None = None
    ) -> bool:
        # The real store's rule (farm.domain.logs.fit_chunk), on a dict.
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.attempt != attempt:
                return False
            fitted = fit_chunk(job.log_bytes, data, cap, offset)
            if fitted is not None:
                text, log_bytes = fitted
                self.logs.setdefault((job_id, attempt), []).append(text)
                job = dataclasses.replace(job, log_bytes=log_bytes)
                self._jobs[job_id] = job
            return job.log_bytes < cap

    def read_log(self, job_id: int, attempt: int) -> str:
        """The whole stored log of an attempt (tests)."""
        with self._lock:
            return "".join(self.logs.get((job_id, attempt), ()))

    # --- test controls (not part of the port) -------------------------------------------

    def backdate_heartbeat(self, job_id: int, seconds: float) -> None:
        """Make a running attempt look silent for ``seconds`` (instead of sleeping)."""
        with self._lock:
            job = self._jobs[job_id]
            then = utcnow() - timedelta(seconds=seconds)
            self._jobs[job_id] = dataclasses.replace(job, heartbeat_at=then, started_at=then)

    def _with_artifacts(self, job: JobRecord) -> JobRecord:
        arts = tuple(a for a in self._artifacts if a.job_id == job.id)
        return dataclasses.replace(job, artifacts=arts)


def _set(record: Any, fields: dict[str, Any], status_type: type[Any]) -> Any:
    """``record`` with ``fields`` applied (a column the record lacks is a TypeError, as the
    real store's UPDATE would fail); status words are stored as their enum."""
    if "status" in fields:
        fields = {**fields, "status": status_type(fields["status"])}
    return dataclasses.replace(record, **fields)


class RecordingDispatcher:
    """Records every dispatch as (job id, attempt, countdown); ``down`` plays a dead broker."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, float | None]] = []
        self.down = False
        self.failed = 0  # dispatches refused while down

    def dispatch(self, job: JobRecord, build: BuildRecord, countdown: float | None = None) -> None:
        if self.down:
            self.failed += 1
            raise ConnectionError("broker is down")
        assert job.build_id == build.id
        self.calls.append((job.id, job.attempt, countdown))

    def jobs(self) -> list[int]:
        """Ids of the jobs dispatched, in order."""
        return [job_id for job_id, _, _ in self.calls]


class ProbingDispatcher(RecordingDispatcher):
    """A dispatcher whose broker says its epoch and queue lengths (``ports.BrokerProbe``).

    ``restart()`` plays a broker restarted without persistence: new epoch, queues empty.
    Queue lengths count the messages sent since, minus those ``take``n by workers."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch = "epoch-1"
        self.queued: Counter[str] = Counter()
        self._restarts = 1
        self._queues: dict[int, str] = {}

    def dispatch(self, job: JobRecord, build: BuildRecord, countdown: float | None = None) -> None:
        super().dispatch(job, build, countdown)
        self.queued[job.queue] += 1

    def broker_epoch(self) -> str | None:
        if self.down:
            raise ConnectionError("broker is down")
        return self.epoch

    def queue_length(self, queue: str) -> int | None:
        if self.down:
            raise ConnectionError("broker is down")
        return self.queued[queue]

    def restart(self) -> None:
        self._restarts += 1
        self.epoch = f"epoch-{self._restarts}"
        self.queued.clear()

    def take(self, queue: str = "farm", n: int | None = None) -> None:
        """Workers took ``n`` messages (all) off ``queue``."""
        self.queued[queue] -= self.queued[queue] if n is None else n


class FakeBlobs:
    """Blobs in a dict keyed by their ``sha256:<hex>`` digest."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def has(self, digest: str) -> bool:
        return digest in self.blobs

    def put_stream(
        self,
        chunks: Iterable[bytes],
        expected_digest: str | None = None,
        max_size: int | None = None,
    ) -> BlobInfo:
        data = b"".join(chunks)
        if max_size is not None and len(data) > max_size:
            raise UploadError(f"blob is larger than {max_size} bytes")
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if expected_digest is not None and expected_digest != digest:
            raise DigestMismatch(f"expected {expected_digest}, got {digest}")
        self.blobs[digest] = data
        return BlobInfo(digest, len(data))

    def put(self, data: bytes) -> str:
        """Store ``data`` (as a worker's upload would); returns its digest."""
        return self.put_stream([data]).digest


def _conforms(
    store: FakeStore, blobs: FakeBlobs, dispatcher: RecordingDispatcher, probe: ProbingDispatcher
) -> tuple[Store, Blobs, Dispatcher, BrokerProbe]:
    """Type-checked only: each fake must implement its port structurally."""
    return store, blobs, dispatcher, probe
