"""``/metrics``: the farm's Prometheus exposition (``prometheus_client``).

Gauges and totals are read from the store when Prometheus scrapes (a custom collector,
:class:`FarmCollector`), so every API process of a farm on one database reports the same
numbers for them. The two histograms are observed by this process: each build that
finishes here adds its jobs' queue wait (queued → started) and duration (started →
finished); scrape every API process and sum. Cache hits and misses are counted from the
answers of ``GET /api/v1/worker/caches/...`` (200: hit, 404: miss).

Kept from the hand-written exposition: ``farm_builds_total``, ``farm_jobs{status}`` and
``farm_blob_data_*_total``. Flower keeps serving the Celery side on its own ``/metrics``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from farm.coordinator.ports import BrokerProbe
from farm.db.repository import Store
from farm.domain.clock import utcnow
from farm.domain.records import BuildRecord
from farm.domain.state import DEFAULT_QUEUE, STATUS_QUEUE
from farm.domain.statuses import FINAL_JOB
from farm.settings import Settings

__all__ = ["CONTENT_TYPE", "CacheLookups", "FarmMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
_DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600)
_CACHE_PREFIX = "/api/v1/worker/caches/"


class FarmCollector(Collector):
    """Reads the store (and the broker's queue lengths) on every scrape."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        probe: BrokerProbe | None,
        blob_counters: Callable[[], dict[str, int] | None],
    ) -> None:
        self.store = store
        self.settings = settings
        self.probe = probe
        self.blob_counters = blob_counters

    def collect(self) -> Iterator[Metric]:
        store = self.store
        builds = store.build_counts()
        yield _gauge("farm_builds_total", "Builds stored", sum(builds.values()))
        by_build = GaugeMetricFamily("farm_builds", "Builds by status", labels=["status"])
        for status, n in sorted(builds.items()):
            by_build.add_metric([status], n)
        yield by_build
        yield _gauge("farm_builds_running", "Builds running", builds.get("running", 0))
        jobs = store.job_counts()
        by_job = GaugeMetricFamily("farm_jobs", "Jobs by status", labels=["status"])
        final = CounterMetricFamily(
            "farm_jobs_finished", "Jobs that reached a final status", labels=["status"]
        )
        for status, n in sorted(jobs.items()):
            by_job.add_metric([status], n)
            if status in FINAL_JOB:
                final.add_metric([status], n)
        yield by_job
        yield final
        # Workers (heartbeats within FARM_WORKER_TIMEOUT) and their slots.
        since = utcnow() - timedelta(seconds=self.settings.worker_timeout)
        live = [w for w in store.list_workers(alive_since=since) if w.alive]
        yield _gauge("farm_workers", "Live workers", len(live))
        slots = GaugeMetricFamily(
            "farm_worker_slots", "Job slots of live workers", labels=["state"]
        )
        slots.add_metric(["total"], sum(w.slots for w in live))
        slots.add_metric(["busy"], sum(len(w.running) for w in live))
        yield slots
        yield from self._queues({q for w in live for q in w.queues})
        yield _gauge(
            "farm_registry_artifact_bytes",
            "Bytes of the distinct blobs artifacts refer to",
            store.artifact_bytes(),
        )
        steps = CounterMetricFamily(
            "farm_rollout_events", "Rollout events (steps, pauses, rollbacks)", labels=["event"]
        )
        for event, n in sorted(store.rollout_event_counts().items()):
            steps.add_metric([event], n)
        yield steps
        for name, value in sorted((self.blob_counters() or {}).items()):
            yield CounterMetricFamily(
                f"farm_blob_data_{name}", f"Blob data plane: {name}", value=value
            )

    def _queues(self, served: set[str]) -> Iterable[Metric]:
        if self.probe is None:
            return
        depth = GaugeMetricFamily(
            "farm_queue_depth", "Messages waiting in a Celery queue (Redis LLEN)", labels=["queue"]
        )
        queues = served | self.store.pending_queues() | {DEFAULT_QUEUE, STATUS_QUEUE}
        for queue in sorted(queues):
            try:
                n = self.probe.queue_length(queue)
            except Exception:  # broker down: no figure rather than a failed scrape
                return
            if n is not None:
                depth.add_metric([queue], n)
        yield depth


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


class FarmMetrics:
    """One API app's registry: the collector, the histograms, the cache counter."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        probe: BrokerProbe | None,
        blob_counters: Callable[[], dict[str, int] | None],
    ) -> None:
        self.store = store
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(FarmCollector(store, settings, probe, blob_counters))
        self.queue_wait = Histogram(
            "farm_job_queue_wait_seconds",
            "From a job's message queued to its attempt started (jobs of builds finished here)",
            ["queue"],
            buckets=_WAIT_BUCKETS,
            registry=self.registry,
        )
        self.duration = Histogram(
            "farm_job_duration_seconds",
            "From a job's attempt started to finished (jobs of builds finished here)",
            ["status"],
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.cache = Counter(
            "farm_cache_lookups",
            "Cache index lookups by workers",
            ["result"],
            registry=self.registry,
        )

    def on_build_finished(self, build: BuildRecord) -> None:
        """``Coordinator.on_build_finished`` hook: observe the build's started jobs.

        Their times are read here (``build.jobs`` is empty unless the build succeeded)."""
        for job in self.store.job_timings(build.id):
            if job.queued_at is not None and job.started_at >= job.queued_at:
                wait = (job.started_at - job.queued_at).total_seconds()
                self.queue_wait.labels(job.queue).observe(wait)
            if job.finished_at is not None:
                took = max(0.0, (job.finished_at - job.started_at).total_seconds())
                self.duration.labels(str(job.status)).observe(took)

    def exposition(self) -> bytes:
        """The text format, read now."""
        return generate_latest(self.registry)


class CacheLookups:
    """ASGI middleware: count cache hits (200) and misses (404) of worker lookups."""

    def __init__(self, app: ASGIApp, metrics: Callable[[], FarmMetrics | None]) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") != "GET"
            or not str(scope.get("path", "")).startswith(_CACHE_PREFIX)
        ):
            await self.app(scope, receive, send)
            return

        async def counting(message: Message) -> None:
            if message["type"] == "http.response.start":
                status: Any = message.get("status")
                metrics = self.metrics()
                if metrics is not None and status in (200, 404):
                    metrics.cache.labels("hit" if status == 200 else "miss").inc()
            await send(message)

        await self.app(scope, receive, counting)
