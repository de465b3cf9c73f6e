"""The API process: FastAPI app factory wiring the coordinator to its edges.

The coordinator lives here: job completions arrive over HTTP and the next jobs
are dispatched from the same request, so the DAG is driven by events, not polls.
A watchdog thread retries attempts whose worker stopped sending heartbeats.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from farm import __version__
from farm.api import commit_status, dashboard
from farm.api.auth import PUBLIC_PATHS, Authenticator, check_exposure, requires
from farm.api.docs import install_docs
from farm.api.errors import InternalErrors, errors, install_error_handlers, install_openapi
from farm.api.limits import BodyLimit
from farm.api.metrics import CONTENT_TYPE, CacheLookups, FarmMetrics
from farm.api.routers import (
    admin,
    blobs,
    builds,
    caches,
    hooks,
    jobs,
    registry,
    releases,
    rollouts,
    schedules,
    secrets,
    tokens,
    worker,
    workers,
)
from farm.coordinator.ports import BrokerProbe, Dispatcher
from farm.coordinator.result_cache import ResultCache
from farm.coordinator.service import Coordinator
from farm.db.releases import RegistryDb
from farm.db.repository import Store
from farm.db.result_cache import ResultCacheDb
from farm.db.rollouts import RolloutDb
from farm.db.secrets import secret_box
from farm.db.session import make_engine, make_sessionmaker, migrate
from farm.db.tokens import TokenDb
from farm.deploy.controller import RolloutController
from farm.deploy.engine import RolloutEngine
from farm.deploy.routing import Routing
from farm.domain.auth import Scope
from farm.registry.factory import (
    ProvenanceRecorder,
    builder_id,
    make_blob_store,
    make_data_plane,
    signing_key,
)
from farm.settings import Settings, get_settings
from farm.worker.app import CeleryDispatcher, make_celery

log = logging.getLogger("farm.api")


def _watchdog(coord: Coordinator, stop: threading.Event) -> None:
    try:
        coord.recover()
    except Exception as exc:
        log.error("recovery after start failed: %s", exc)
    interval = coord.settings.watchdog_interval
    due = time.monotonic() + interval
    while not stop.is_set():
        # Wakes at least every second: the finishes' batched timeline marks wait no longer.
        kicked = coord.outbox_kick.wait(min(1.0, max(0.0, due - time.monotonic())))
        if stop.is_set():
            return
        try:
            coord.flush_marks()
            if kicked:  # an advance left ready jobs in the outbox: send them now
                coord.outbox_kick.clear()
                coord.sweep()
            if time.monotonic() >= due:
                due = time.monotonic() + interval
                coord.watchdog()
        except Exception as exc:  # keep watching; a DB blip is not fatal
            log.error("watchdog pass failed: %s", exc)


def _blob_access(auth: Authenticator) -> Callable[[str, str | None], None]:
    """The data plane's check: reads need read or worker, writes need worker."""

    def authorize(method: str, header: str | None) -> None:
        if method in ("GET", "HEAD"):
            auth.authorize(header, Scope.READ, Scope.WORKER)
        else:
            auth.authorize(header, Scope.WORKER)

    return authorize


def create_app(
    settings: Settings | None = None, *, dispatcher: Dispatcher | None = None
) -> FastAPI:
    """Build the API app: migrate the schema, open the stores, start the watchdog.

    ``dispatcher`` replaces the Celery dispatcher (tests record dispatches instead of
    publishing to a broker); by default jobs are queued on Celery.
    """
    settings = settings or get_settings()
    check_exposure(settings)  # no auth beyond loopback: refuse, with the reason
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    store_sessions = make_sessionmaker(engine)
    tokens_db = TokenDb(store_sessions)
    if settings.auth and settings.local_tokens:
        # One-host farms: this host's CLI and workers find their tokens under the data
        # dir (0600), so `farm up` works with auth on and nothing to configure.
        tokens_db.ensure_local(settings.data_dir)
    # Secrets are encrypted at rest under FARM_SECRET_KEY or the key file (one-line error
    # if the key is malformed).
    key_text = settings.secret_key.get_secret_value() if settings.secret_key else None
    store = Store(store_sessions, secret_box(key_text, settings.key_dir))
    store.check_secret_key()  # a wrong key stops the start, not a build later
    blobstore = make_blob_store(settings)
    celery = make_celery(settings)
    if dispatcher is None:
        dispatcher = CeleryDispatcher(celery)
    coord = Coordinator(store, blobstore, dispatcher, settings)
    coord.results = ResultCache(ResultCacheDb(store), blobstore)  # issue 11
    # Provenance: every green build gets a statement signed with the farm's key.
    key = signing_key(settings)
    coord.on_build_finished.append(ProvenanceRecorder(store, blobstore, key, builder_id(settings)))
    # Deployments: the engine applies people's commands, the controller drives the steps,
    # and a green build on a plan's `auto` branches is released and rolled out by itself.
    registry_db = RegistryDb(store_sessions)
    rollouts_db = RolloutDb(store_sessions)
    rollout_engine = RolloutEngine(
        rollouts_db, registry_db, coord, blobstore, Routing(rollouts_db, registry_db)
    )
    controller = RolloutController(rollout_engine, settings.resolved_api_url, settings.job_timeout)
    coord.on_build_finished.append(controller.on_build_finished)
    stop = threading.Event()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        thread = threading.Thread(
            target=_watchdog, args=(coord, stop), daemon=True, name="farm-watchdog"
        )
        thread.start()
        rollout_thread = threading.Thread(
            target=controller.run, args=(settings.rollout_tick,), daemon=True, name="farm-rollouts"
        )
        rollout_thread.start()
        schedule_thread = threading.Thread(
            target=scheduler.run, args=(settings.schedule_tick,), daemon=True, name="farm-schedules"
        )
        schedule_thread.start()
        data_plane = make_data_plane(settings, blobstore, authorize=_blob_access(app.state.auth))
        app.state.blob_data = data_plane.start() if data_plane else None
        if data_plane is not None:
            log.info("blob data plane on %s:%s", settings.api_host, data_plane.port)
        yield
        if data_plane is not None:
            data_plane.stop()
        stop.set()
        coord.outbox_kick.set()  # wakes the watchdog thread, which sees stop and ends
        controller.stop()
        scheduler.stop()
        thread.join(timeout=5)
        rollout_thread.join(timeout=5)
        schedule_thread.join(timeout=5)
        with contextlib.suppress(Exception):  # a stopping API keeps what it can
            coord.flush_marks()
        engine.dispose()

    app = FastAPI(
        title="farm",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,  # farm/api/docs.py serves /docs from the package, not a CDN
        redoc_url=None,
        description="A distributed build farm: GitLab-CI-compatible pipelines "
        "run as Celery jobs in isolated Docker containers.",
    )
    app.state.settings = settings
    app.state.store = store
    app.state.blobstore = blobstore
    app.state.blob_data = None  # the data plane, once the lifespan started it
    app.state.coordinator = coord
    app.state.celery = celery
    app.state.registry_db = registry_db
    app.state.rollouts = rollout_engine
    app.state.signing_key = key
    app.state.auth = Authenticator(tokens_db, settings)

    install_error_handlers(app)
    # Request bodies are capped before they are read; the blob routes stream to the store
    # under FARM_MAX_BLOB_BYTES instead.  InternalErrors (outermost of ours) answers any
    # unexpected exception with a JSON 500 and a bounded log line.
    app.add_middleware(
        BodyLimit,
        limit=settings.max_request_bytes,
        worker_limit=settings.max_worker_request_bytes,
        worker=(worker.router.prefix + "/",),
        exempt=(blobs.router.prefix + "/",),
    )
    app.add_middleware(InternalErrors)
    install_openapi(app, PUBLIC_PATHS if settings.auth else None)
    install_docs(app)

    @app.get("/healthz", tags=["meta"], responses=errors(503))
    def healthz() -> dict[str, str]:
        """Liveness: the API answers and its database is reachable."""
        store.count_builds()
        return {"status": "ok", "version": __version__}

    # Prometheus (farm/api/metrics.py): gauges read from the store on each scrape.
    farm_metrics = FarmMetrics(
        store,
        settings,
        dispatcher if isinstance(dispatcher, BrokerProbe) else None,
        lambda: dict(app.state.blob_data.counters.values) if app.state.blob_data else None,
    )
    coord.on_build_finished.append(farm_metrics.on_build_finished)
    app.add_middleware(CacheLookups, metrics=lambda: farm_metrics)

    @app.get(
        "/metrics",
        tags=["meta"],
        dependencies=[requires(Scope.READ)],
        response_class=PlainTextResponse,
        responses=errors(503),
    )
    def metrics() -> PlainTextResponse:
        """Prometheus text: builds, jobs, queues, workers, registry, caches, rollouts
        (Flower has the Celery side)."""
        return PlainTextResponse(farm_metrics.exposition(), media_type=CONTENT_TYPE)

    for r in (
        builds.router,
        jobs.router,
        worker.router,
        caches.router,
        blobs.router,
        registry.router,
        releases.router,
        admin.router,
        rollouts.router,
        tokens.router,
        secrets.router,
        workers.beats,
        workers.router,
    ):
        app.include_router(r)
    hooks.install(app, store_sessions)  # webhooks and their delivery ledger
    dashboard.install(app)  # the web dashboard: pages, /login, /static
    # Webhook builds' statuses go back to their git host; schedules fire on the timer.
    commit_status.install(coord, celery, store_sessions, settings)
    scheduler = schedules.install(app, coord, store_sessions)
    return app
