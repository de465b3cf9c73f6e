"""The worker's Celery consumer: task events for Flower go out a batch at a time.

Celery buffers a worker's task events (received, started, succeeded) and flushes the
buffer on the next turn of its event loop after each one: two or three broker
publishes per task, about a sixth of a busy no-op worker's CPU (``bench/scale_bench``).
This consumer flushes at most every :data:`EVENTS_EVERY` seconds instead (and at once
when the buffer holds Celery's limit of 24), so Flower sees a task's state change that
much later, and a worker process publishes about ten event messages a second whatever
its task rate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery.worker.consumer import Consumer

log = logging.getLogger("farm.worker")

EVENTS_EVERY = 0.1  # seconds between flushes of the task-event buffer, at most


class FarmConsumer(Consumer):
    """Celery's consumer with its task-event flushes coalesced (see the module doc)."""

    # What this class uses of Celery's, which celery-types does not declare.
    hub: Any
    _flush_events: Callable[[], None]
    _flush_due = False

    def on_send_event_buffered(self) -> None:  # type: ignore[override]  # stub: wrong type
        """An event was buffered (on any thread): flush within EVENTS_EVERY seconds."""
        if self.hub is None or self._flush_due:
            return
        self._flush_due = True
        self.hub.call_soon(self._flush_later)

    def _flush_later(self) -> None:
        # On the event loop's thread, where its timer may be used.
        self.hub.call_later(EVENTS_EVERY, self._flush_now)

    def _flush_now(self) -> None:
        self._flush_due = False
        self._flush_events()

    def shutdown(self) -> None:
        """Send what is buffered before the connections close (Flower sees the end)."""
        try:
            self._flush_events()
        except Exception as exc:  # the broker may be gone: shutting down matters more
            log.warning("could not send the last task events: %s", exc)
        super().shutdown()
