"""Reusing job results: a job whose inputs equal an earlier successful job's is not run.

Where the key is computed (issue 11's decision): **in the coordinator, when the job
becomes ready** (``Coordinator._advance``), before any message is sent. It knows the
job's spec, the build's variables, ref and commit, the source snapshot's digest and the
digests of every upstream artifact (``farm.domain.result_key``). It does not know the
image's digest — only a worker's dockerd does — so the image is keyed by name and tag.
Asking the worker would cost a broker round trip and a claim per cached job, and a
cached job would wait for a free slot; keyed here, a chain of cached jobs settles in
the one request that made them ready, with no container, no worker and no message.

A hit (:meth:`ResultCache.reuse`) turns the pending job into ``success`` with the earlier
job's exit code and coverage, a copy of its log (after one line naming the job it came
from) and its artifacts — the same digests, each checked to be still in the blob store
first (a collected blob is a miss, and the job runs). ``cached_from`` records the
source; the API, the CLI and the deliverable manifest show ``cached``. A job that ran
and succeeded is remembered under its key when its report arrives.

Never reused: ``when: manual`` jobs, deploy jobs (an ``environment``, or any job of a
child build a rollout or trigger started), jobs in a ``resource_group``, builds or
projects with secrets that apply, and anything opted out (``FARM_CACHE_RESULT=false`` as
a job or build variable; ``farm submit --no-cache`` and the API's ``no_cache: true``
set it on the build).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Protocol

from farm.coordinator.ports import Blobs
from farm.domain.progress import Shape
from farm.domain.records import ArtifactRecord, BuildRecord, JobRecord
from farm.domain.result_key import never_cached, result_key
from farm.domain.statuses import ArtifactKind

log = logging.getLogger("farm.coordinator")
_INPUT_KINDS = (ArtifactKind.ARCHIVE, ArtifactKind.DOTENV)


class ResultStore(Protocol):
    """What the result cache needs from the database (farm/db/result_cache.py)."""

    def has_secrets(self, build: BuildRecord) -> bool:
        """Whether any secret (the build's or its project's) applies to the build."""

    def job_artifacts(self, build_id: int) -> Mapping[int, Sequence[ArtifactRecord]]:
        """Every job artifact of the build, by job id."""

    def lookup(self, key: str) -> JobRecord | None:
        """The successful job remembered under ``key`` (with its artifacts), if any."""

    def remember(self, key: str, job_id: int) -> None:
        """Remember ``job_id`` (just succeeded) under ``key``; the latest one wins."""

    def reuse(
        self, job_id: int, attempt: int, source: JobRecord, timeline: dict[str, float]
    ) -> bool:
        """Compare-and-set the pending attempt to the source's result, copying its log and
        artifacts in the same transaction; False if the job was not pending any more."""


class ResultCache:
    """Keys, looks up and reuses results for one coordinator."""

    def __init__(self, store: ResultStore, blobs: Blobs) -> None:
        self.store = store
        self.blobs = blobs

    def key(
        self,
        build: BuildRecord,
        job: JobRecord,
        shape: Shape,
        artifacts: Mapping[int, Sequence[ArtifactRecord]],
        has_secrets: bool,
    ) -> str | None:
        """The job's result key, None if it is never cached. ``shape``: the build's jobs
        and DAG (its name and id indexes make a key O(the job's upstream))."""
        spec = job.spec
        why = never_cached(
            spec,
            build_variables=build.variables,
            has_secrets=has_secrets,
            child_build=build.parent_build_id is not None,
        )
        if why is not None:
            return None
        if spec.dependencies is not None:
            sources = list(spec.dependencies)
        elif spec.needs is not None:
            sources = [n.job for n in spec.needs if n.artifacts]
        else:
            own = shape.ranks[shape.index[job.id]]
            sources = [j.name for j, r in zip(shape.jobs, shape.ranks, strict=True) if r < own]
        inputs: list[tuple[str, str, str, str]] = []
        for name in sources:
            at = shape.named.get(name)
            if at is None:
                continue
            upstream = shape.jobs[at]
            for art in artifacts.get(upstream.id, ()):
                if art.kind in _INPUT_KINDS:
                    inputs.append((name, art.name, art.kind, art.digest))
        return result_key(
            spec,
            project=build.project,
            repo=build.repo,
            ref=build.ref,
            commit=build.commit,
            source=build.source,
            build_variables=build.variables,
            snapshot_digest=build.snapshot_digest,
            inputs=inputs,
        )

    def reuse_ready(
        self,
        build: BuildRecord,
        shape: Shape,
        ready: Sequence[tuple[JobRecord, float | None]],
    ) -> set[int]:
        """Finish every ready job (a pending attempt, no delay) whose result is cached;
        returns their ids."""
        candidates = [job for job, countdown in ready if countdown is None]
        if not candidates or not any(self._eligible(build, j) for j in candidates):
            return set()
        secrets = self.store.has_secrets(build)
        if secrets:
            return set()
        artifacts = self.store.job_artifacts(build.id)
        done: set[int] = set()
        for job in candidates:
            key = self.key(build, job, shape, artifacts, secrets)
            if key is None:
                continue
            source = self.store.lookup(key)
            if source is None or source.id == job.id:
                continue
            if not all(self.blobs.has(a.digest) for a in source.artifacts):
                log.info("job %s: cached result of job %s lost a blob; running", job.id, source.id)
                continue
            now = time.time()
            if self.store.reuse(job.id, job.attempt, source, {"queued": now, "reused": now}):
                log.info("job %s (%s) reused the result of job %s", job.id, job.name, source.id)
                done.add(job.id)
        return done

    def remember(self, build: BuildRecord, job: JobRecord, shape: Shape) -> None:
        """A job ran and succeeded: remember it under its key (if it may be cached)."""
        if not self._eligible(build, job):
            return
        secrets = self.store.has_secrets(build)
        if secrets:
            return
        key = self.key(build, job, shape, self.store.job_artifacts(build.id), secrets)
        if key is not None:
            self.store.remember(key, job.id)

    @staticmethod
    def _eligible(build: BuildRecord, job: JobRecord) -> bool:
        return (
            never_cached(
                job.spec,
                build_variables=build.variables,
                has_secrets=bool(build.secrets),
                child_build=build.parent_build_id is not None,
            )
            is None
        )
