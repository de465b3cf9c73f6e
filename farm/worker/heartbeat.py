"""The worker's heartbeat: who it is, what it serves, how busy it is — every few seconds.

Started with the worker's housekeeping threads (``run_job._start_housekeeping``, on
Celery's ``worker_ready``). It posts a :class:`~farm.domain.workers.WorkerHeartbeat` to
``POST /api/v1/worker/heartbeat`` every ``FARM_WORKER_HEARTBEAT`` seconds: the worker's
name, host, the queues its consumer reads (tags are read off them), its slots (Celery's
concurrency) and the jobs it runs now (counted by ``task_prerun``/``task_postrun`` of
``farm.run_job``: the ``threads`` and ``solo`` pools run tasks in this process). The API
lists it (``farm workers``) and marks jobs no live worker can take as stuck.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

from celery import signals

from farm.domain.workers import WorkerHeartbeat, queue_tags
from farm.http import NO_RETRY, HttpClient, HttpConfig
from farm.settings import Settings
from farm.worker.app import RUN_JOB

log = logging.getLogger("farm.worker")
PATH = "/api/v1/worker/heartbeat"

_running: dict[str, int] = {}  # task id -> job id
_lock = threading.Lock()


@signals.task_prerun.connect
def _started(task_id: str = "", task: Any = None, args: Any = None, **_: Any) -> None:
    if getattr(task, "name", None) == RUN_JOB and args:
        with _lock:
            _running[task_id] = int(args[0])


@signals.task_postrun.connect
def _ended(task_id: str = "", **_: Any) -> None:
    with _lock:
        _running.pop(task_id, None)


def running_jobs() -> list[int]:
    """The job ids this process runs now."""
    with _lock:
        return sorted(_running.values())


def describe(consumer: Any, settings: Settings) -> WorkerHeartbeat:
    """The heartbeat of the worker ``consumer`` belongs to (Celery's ``worker_ready``)."""
    try:
        queues = sorted(q.name for q in consumer.task_consumer.queues)
    except Exception:  # no consumer yet: what the app was told to read
        queues = sorted(consumer.app.amqp.queues.keys()) if consumer is not None else []
    tags = sorted({t for q in queues for t in (queue_tags(q) or ())})
    try:
        slots = int(consumer.controller.concurrency)
    except Exception:
        slots = 1
    name = str(getattr(consumer, "hostname", "") or settings.worker_name)
    return WorkerHeartbeat(
        name=name, host=socket.gethostname(), tags=tags, queues=queues, slots=slots
    )


def beat_loop(
    me: WorkerHeartbeat, settings: Settings, token: str | None, stop: threading.Event
) -> None:
    """Post ``me`` (with the running jobs of the moment) until ``stop`` is set."""
    http = HttpClient(
        HttpConfig(settings.resolved_api_url, timeout=5.0, retry=NO_RETRY, token=token)
    )
    failing = False
    try:
        while True:
            body = me.model_copy(update={"running": running_jobs()})
            try:
                http.request("POST", PATH, json=body.model_dump(mode="json"), idempotent=True)
                if failing:
                    log.info("heartbeat: the API takes them again")
                failing = False
            except Exception as exc:  # the API is down or older: keep trying, log once
                if not failing:
                    log.warning("heartbeat to the API failed: %s", exc)
                failing = True
            if stop.wait(settings.worker_heartbeat):
                return
    finally:
        http.close()


def start(consumer: Any, settings: Settings, token: str | None, stop: threading.Event) -> None:
    """Start the heartbeat thread of this worker."""
    me = describe(consumer, settings)
    log.info("heartbeat: %s serves %s with %d slot(s)", me.name, ",".join(me.queues), me.slots)
    threading.Thread(
        target=beat_loop, args=(me, settings, token, stop), daemon=True, name="farm-heartbeat"
    ).start()
