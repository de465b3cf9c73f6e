"""One timer thread per worker process, for the short periodic chores of its attempts.

Each attempt used to start two threads of its own (its lease renewer and its log
flusher) even when it ended within a millisecond: a thread start, a join and their GIL
hand-offs per attempt, on every slot. The chores themselves are short (touch a file,
start the flusher once the attempt outlives its first interval), so one thread runs
them all, each at its time. A callback must be quick and must not block: anything that
may wait on the network belongs on a thread of its own, which a callback may start.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("farm.worker")

__all__ = ["Ticker", "ticker"]

SLACK = 0.05  # seconds a chore may run early, to share a wake-up with others


@dataclass(order=True)
class _Entry:
    due: float
    seq: int
    fn: Callable[[], float | None] = field(compare=False)
    canceled: bool = field(default=False, compare=False)


class Timer:
    """A scheduled callback; :meth:`cancel` keeps it (and its repeats) from running."""

    def __init__(self, entry: _Entry) -> None:
        self._entry = entry

    def cancel(self) -> None:
        """Never run again (a run already started completes)."""
        self._entry.canceled = True


class Ticker:
    """Runs callbacks at their times on one daemon thread, started on first use.

    A callback returns None to run once, or the seconds until it runs again; it may
    run up to :data:`SLACK` seconds early.
    """

    def __init__(self) -> None:
        self._heap: list[_Entry] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def after(self, delay: float, fn: Callable[[], float | None]) -> Timer:
        """Run ``fn`` in ``delay`` seconds (again after what it returns, if not None)."""
        entry = _Entry(time.monotonic() + delay, next(self._seq), fn)
        with self._cond:
            heapq.heappush(self._heap, entry)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="farm-ticker", daemon=True)
                self._thread.start()
            elif self._heap[0] is entry:
                self._cond.notify()  # sooner than what the thread waits for
        return Timer(entry)

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._heap:
                    self._cond.wait()
                    continue
                now = time.monotonic()
                if self._heap[0].due > now:
                    self._cond.wait(self._heap[0].due - now)
                    continue
                # Whatever is due within SLACK runs now too: one wake-up serves many
                # attempts (each one's chores would otherwise wake the thread apart).
                due: list[_Entry] = []
                while self._heap and self._heap[0].due <= now + SLACK:
                    due.append(heapq.heappop(self._heap))
            for entry in due:
                self._fire(entry)

    def _fire(self, entry: _Entry) -> None:
        if entry.canceled:
            return
        try:
            again = entry.fn()
        except Exception:  # one chore's fault must not stop the others
            log.exception("a worker timer callback failed")
            return
        if again is not None and not entry.canceled:
            with self._cond:
                entry.due = time.monotonic() + again
                entry.seq = next(self._seq)
                heapq.heappush(self._heap, entry)


ticker = Ticker()
"""The worker process's one ticker."""
