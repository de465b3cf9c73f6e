"""The Celery app of ``bench/celery_floor.py``: farm's own configuration, one empty task."""

from __future__ import annotations

import os

import redis

from farm.settings import Settings
from farm.worker.app import make_celery

app = make_celery(Settings(broker_url=os.environ["FLOOR_BROKER"]))
app.conf.include = []  # farm's tasks are not what is measured
_done: redis.Redis | None = None


@app.task(name="bench.floor", acks_late=True)
def floor(i: int) -> None:
    """Nothing but counting itself done (one INCR: how the bench knows the end)."""
    global _done
    if _done is None:
        _done = redis.Redis.from_url(os.environ["FLOOR_BROKER"])
    _done.incr("floor:done")
