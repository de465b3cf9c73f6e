"""Group commit for a worker's slots: calls made while a request is in flight go together.

A worker process runs several slots (threads), and under load their claims and finish
reports come in bursts. Each request costs the API a framework pass and the worker an
HTTP exchange whatever it carries, so concurrent calls share one: the first caller
sends at once (an idle worker waits for nobody), and whatever arrives while that request
is out goes in the next one, sent by one of its own callers as soon as the first
returns. Each caller still waits for its own answer, so a slot never moves on before the
API has taken its claim or report: batching changes what travels together, not what
the protocol promises.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from farm.errors import FarmError

In = TypeVar("In")
Out = TypeVar("Out")

__all__ = ["Batcher"]


@dataclass
class _Call(Generic[In, Out]):
    item: In
    weight: int
    done: bool = False
    value: Out | None = None
    error: BaseException | None = None


@dataclass
class Batcher(Generic[In, Out]):
    """Sends concurrent :meth:`call` items together through ``send``.

    ``send(items)`` answers one result per item, in order: the value, or the exception
    that item's caller raises. An exception of ``send`` itself (the request failed) is
    raised by every caller of that batch. A batch holds at most ``limit`` items and, past
    its first item, at most ``budget`` of ``weight`` (a big item goes alone).
    """

    send: Callable[[list[In]], Sequence[Out | BaseException]]
    limit: int = 32
    budget: int = 1 << 20
    weight: Callable[[In], int] = field(default=lambda _item: 0)
    _cond: threading.Condition = field(default_factory=threading.Condition, init=False)
    _queue: list[_Call[In, Out]] = field(default_factory=list, init=False)
    _busy: bool = field(default=False, init=False)

    def call(self, item: In) -> Out:
        """Send ``item`` (with whatever else is waiting) and return its own answer."""
        mine: _Call[In, Out] = _Call(item, self.weight(item))
        with self._cond:
            self._queue.append(mine)
            while not mine.done:
                if self._busy:
                    self._cond.wait()
                    continue
                self._busy = True
                batch = self._take()
                self._cond.release()
                try:
                    self._run(batch)
                finally:
                    self._cond.acquire()
                    for c in batch:
                        c.done = True
                    self._busy = False
                    self._cond.notify_all()
        if mine.error is not None:
            raise mine.error
        return mine.value  # type: ignore[return-value]  # set whenever error is not

    def _take(self) -> list[_Call[In, Out]]:
        """The next batch off the queue, oldest first (called with the lock held)."""
        size = 0
        count = 0
        for c in self._queue:
            if count and (count >= self.limit or size + c.weight > self.budget):
                break
            size += c.weight
            count += 1
        batch, self._queue = self._queue[:count], self._queue[count:]
        return batch

    def _run(self, batch: list[_Call[In, Out]]) -> None:
        """Send one batch and hand each call its answer (without the lock)."""
        try:
            results = self.send([c.item for c in batch])
            if len(results) != len(batch):
                raise FarmError(f"{len(results)} answers to a batch of {len(batch)}")
        except BaseException as exc:  # every caller of the batch raises it
            for c in batch:
                c.error = exc
            return
        for c, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                c.error = result
            else:
                c.value = result
