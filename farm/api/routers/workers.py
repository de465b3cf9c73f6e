"""Workers: their heartbeats in (worker scope) and the list of them out (read scope).

``POST /api/v1/worker/heartbeat`` sits beside the other worker endpoints; the list is
``GET /api/v1/workers`` (``farm workers``). The coordinator's stuck pass
(farm/coordinator/stuck.py) reads the same rows: which queues live workers consume.
"""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter

from farm.api.auth import requires
from farm.api.deps import SettingsDep, StoreDep
from farm.api.errors import errors
from farm.domain.auth import Scope
from farm.domain.clock import utcnow
from farm.domain.workers import WorkerHeartbeat, WorkerInfo

beats = APIRouter(prefix="/api/v1/worker", tags=["worker"])
router = APIRouter(prefix="/api/v1/workers", tags=["workers"])


@beats.post(
    "/heartbeat",
    status_code=204,
    dependencies=[requires(Scope.WORKER)],
    responses=errors(503),
)
def heartbeat(body: WorkerHeartbeat, store: StoreDep) -> None:
    """A worker is alive: its name, host, tags, queues, slots and running jobs."""
    store.record_heartbeat(body, utcnow())


@router.get(
    "",
    response_model=list[WorkerInfo],
    dependencies=[requires(Scope.READ)],
    responses=errors(503),
)
def list_workers(store: StoreDep, settings: SettingsDep, all: bool = False) -> list[WorkerInfo]:
    """Workers by name: live ones (heartbeat within FARM_WORKER_TIMEOUT); ``all``: every
    one seen in the last day."""
    now = utcnow()
    since = now - timedelta(seconds=settings.worker_timeout)
    store.forget_workers(now - timedelta(days=1))
    workers = store.list_workers(alive_since=since)
    return workers if all else [w for w in workers if w.alive]
