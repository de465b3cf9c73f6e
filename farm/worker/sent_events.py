"""The API's ``task-sent`` events for Flower, sent a batch at a time.

Celery publishes a task's ``task-sent`` event (``task_send_sent_event``: Flower shows
queued tasks) as a message of its own right after the task: a second broker publish
per job, dearer than the task's (``bench/scale_bench``: ≈ 0.25 ms of API CPU a job).
:class:`SentEvents` stands in as ``send_task``'s event dispatcher: the events wait in a
buffer and go out together within :data:`~farm.worker.consumer.EVENTS_EVERY` seconds
(at once when the buffer holds Celery's limit), as the workers' own events do.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from farm.worker.consumer import EVENTS_EVERY
from farm.worker.ticker import Ticker

log = logging.getLogger("farm.worker")


class SentEvents:
    """An ``event_dispatcher`` for ``Celery.send_task`` that buffers ``task-sent``."""

    def __init__(self, app: Celery) -> None:
        self._events = app.events.Dispatcher(
            app.connection_for_write(), buffer_group=["task"], on_send_buffered=self._soon
        )
        self._ticker = Ticker()  # its own: a flush waits on the broker
        self._due = False

    def publish(self, type: str, fields: dict[str, Any], *_: Any, **__: Any) -> None:
        """What ``send_task`` calls for the event: buffer it (its producer is not used)."""
        self._events.send(type, **fields)

    def _soon(self) -> None:
        if not self._due:
            self._due = True
            self._ticker.after(EVENTS_EVERY, self.flush)

    def flush(self) -> None:
        """Send what is buffered now (Flower only: a failure loses the events)."""
        self._due = False
        try:
            self._events.flush()
        except Exception as exc:
            log.warning("could not send task-sent events to the broker: %s", exc)
