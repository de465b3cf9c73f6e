"""The Celery app: Redis broker, late acks, one message per free slot, events for Flower."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterable

import redis
from celery import Celery

from farm.domain.records import BuildRecord, JobRecord
from farm.domain.state import DEFAULT_QUEUE
from farm.errors import FarmError
from farm.settings import Settings
from farm.worker.sent_events import SentEvents
from farm.worker.transport import TRANSPORT

RUN_JOB = "farm.run_job"


class JobFailed(FarmError):
    """Raised by the task after a failed attempt was reported, so Flower and Celery show
    the task as FAILURE (the farm's own record is the report, already sent)."""


def make_celery(settings: Settings) -> Celery:
    """A configured Celery app; tasks are registered by importing ``farm.worker.run_job``
    and ``farm.worker.commit_status``."""
    app = Celery(
        "farm",
        broker=settings.broker_url,
        include=["farm.worker.run_job", "farm.worker.commit_status"],
    )
    # Redis redelivers an unacked message after visibility_timeout: keep it above the
    # longest job so a long job is never handed out twice (celery#5935). Lost workers
    # are caught by the coordinator's heartbeat watchdog long before this.
    visibility = settings.job_timeout + 900
    if settings.broker_url.startswith(("redis://", "rediss://")):
        app.conf.broker_transport = TRANSPORT  # farm/worker/transport.py says why
    app.conf.update(
        task_default_queue=DEFAULT_QUEUE,
        task_ignore_result=True,  # results travel over the farm API, not the backend
        result_backend=settings.result_backend,
        task_acks_late=True,
        # A task that raises (JobFailed: the job failed and was reported) is acked like
        # one that returns, never redelivered; only a lost worker's message is (below).
        task_acks_on_failure_or_timeout=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_disable_prefetch=True,  # fetch only when a slot is free (celery#6500)
        worker_send_task_events=True,
        worker_consumer="farm.worker.consumer:FarmConsumer",  # events in batches
        task_send_sent_event=True,
        task_serializer="json",
        accept_content=["json"],
        broker_transport_options={"visibility_timeout": visibility},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
    )
    return app


# How kombu's Redis transport names a queue's lists: the queue, then one list per
# priority step above 0 (``kombu.transport.redis.Channel._q_for_pri``).
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


# Removes the given messages from a list in one pass, atomically: one LREM per message
# would scan the list once each (a 10,000-job cancel kept Redis busy, and every worker
# waiting on it, for O(n^2)). Messages taken meanwhile are simply not found; messages
# pushed meanwhile are kept; the order of the rest is kept.
_DROP_SCRIPT = """
local drop = {}
for i = 1, #ARGV do drop[ARGV[i]] = (drop[ARGV[i]] or 0) + 1 end
local items = redis.call('LRANGE', KEYS[1], 0, -1)
local keep, removed = {}, 0
for _, v in ipairs(items) do
  local n = drop[v]
  if n and n > 0 then drop[v] = n - 1; removed = removed + 1 else keep[#keep + 1] = v end
end
if removed > 0 then
  redis.call('DEL', KEYS[1])
  for i = 1, #keep, 4000 do
    redis.call('RPUSH', KEYS[1], unpack(keep, i, math.min(i + 3999, #keep)))
  end
end
return removed
"""
_DROP_BATCH = 2000  # messages named per script call (bounds one call's arguments)


class CeleryDispatcher:
    """Queues job attempts as Celery messages named after the build and job (Flower).

    On a Redis broker it is also a ``BrokerProbe``: the coordinator's outbox asks it for
    Redis' ``run_id`` (new on every restart: the messages may be gone) and for the length
    of a queue (coordinator/service.py explains what for).
    """

    def __init__(self, app: Celery) -> None:
        self.app = app
        self._redis: redis.Redis | None = None
        self._lock = threading.Lock()
        self._sent: SentEvents | None = None  # made on first dispatch (it connects)

    def dispatch(self, job: JobRecord, build: BuildRecord, countdown: float | None = None) -> None:
        """Send ``run_job(job.id, job.attempt)`` to the job's queue.

        The task keeps its registered name everywhere (Flower's /metrics labels series by
        it: a name per build would grow them without bound); what a person reads in
        Flower and the worker's log is the arguments' text, ``argsrepr``.
        """
        with self._lock:
            if self._sent is None:
                self._sent = SentEvents(self.app)
        self.app.send_task(
            RUN_JOB,
            args=(job.id, job.attempt),
            queue=job.queue,
            countdown=countdown or None,
            argsrepr=f"build {build.id} · {job.name} #{job.attempt} (job {job.id})",
            event_dispatcher=self._sent,  # task-sent for Flower, in batches
        )

    def withdraw(self, jobs: Iterable[tuple[int, str]]) -> int:
        """Remove the queued ``run_job`` messages of these (job id, queue) pairs, every
        attempt's; how many were removed. Messages a worker already holds are its to
        refuse (the claim's compare-and-set)."""
        client = self._client()
        if client is None:
            return 0
        by_queue: dict[str, set[int]] = {}
        for job_id, queue in jobs:
            by_queue.setdefault(queue, set()).add(job_id)
        removed = 0
        for queue, ids in by_queue.items():
            for name in (queue + suffix for suffix in _PRIORITY_SUFFIXES):
                raws: list[bytes] = list(client.lrange(name, 0, -1))  # type: ignore[arg-type]
                drop = [raw for raw in raws if _job_of(raw) in ids]
                for i in range(0, len(drop), _DROP_BATCH):
                    batch = drop[i : i + _DROP_BATCH]
                    removed += int(client.eval(_DROP_SCRIPT, 1, name, *batch))
        return removed

    def _client(self) -> redis.Redis | None:
        url = str(self.app.conf.broker_url or "")
        if not url.startswith(("redis://", "rediss://")):
            return None  # another broker: no epoch, no queue lengths (the outbox still works)
        with self._lock:
            if self._redis is None:
                # Short timeouts: the watchdog pass asks, and must not hang on a dead broker.
                self._redis = redis.Redis.from_url(
                    url, socket_timeout=3, socket_connect_timeout=3, health_check_interval=10
                )
            return self._redis

    def broker_epoch(self) -> str | None:
        """Redis' ``run_id``: a new one means redis-server restarted since."""
        client = self._client()
        if client is None:
            return None
        run_id = client.info("server").get("run_id")
        return str(run_id) if run_id else None

    def queue_length(self, queue: str) -> int | None:
        """Messages waiting in ``queue`` (every priority); a worker's reserved ones aside."""
        client = self._client()
        if client is None:
            return None
        with client.pipeline(transaction=False) as pipe:
            for suffix in _PRIORITY_SUFFIXES:
                pipe.llen(queue + suffix)
            return sum(int(n) for n in pipe.execute())


def _job_of(raw: bytes | str) -> int | None:
    """The job id of a queued ``run_job`` message (kombu's Redis JSON envelope), or None."""
    try:
        message = json.loads(raw)
        if message.get("headers", {}).get("task") != RUN_JOB:
            return None
        args = json.loads(base64.b64decode(message["body"]))[0]
        return int(args[0])
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None
