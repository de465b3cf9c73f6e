"""Group commit: calls made while a batch is out go together in the next one."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from farm.errors import Conflict, FarmError
from farm.worker.batcher import Batcher


class Gate:
    """A ``send`` that records its batches and holds the first one until released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def send(self, items: list[int]) -> Sequence[int | BaseException]:
        self.batches.append(list(items))
        if len(self.batches) == 1:
            self.entered.set()
            assert self.release.wait(10)
        return [Conflict(f"{i} refused") if i < 0 else i * 10 for i in items]


def waiting(batcher: Batcher[int, int], count: int) -> bool:
    """Whether ``count`` calls wait in the queue (the test's view of the internals)."""
    with batcher._cond:
        return len(batcher._queue) == count


def until(check: object, timeout: float = 10.0) -> None:
    ok = threading.Event()

    def poll() -> None:
        while not ok.is_set():
            if check():  # type: ignore[operator]
                ok.set()
            else:
                ok.wait(0.005)

    threading.Thread(target=poll, daemon=True).start()
    assert ok.wait(timeout)


def test_a_lone_call_goes_at_once() -> None:
    gate = Gate()
    gate.release.set()
    batcher: Batcher[int, int] = Batcher(gate.send)
    assert batcher.call(4) == 40
    assert gate.batches == [[4]]


def test_calls_made_while_a_batch_is_out_go_together_next() -> None:
    gate = Gate()
    batcher: Batcher[int, int] = Batcher(gate.send)
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(batcher.call, 1)
        assert gate.entered.wait(10)
        rest = [pool.submit(batcher.call, n) for n in range(2, 7)]
        until(lambda: waiting(batcher, 5))
        gate.release.set()
        assert first.result(10) == 10
        assert [f.result(10) for f in rest] == [20, 30, 40, 50, 60]
    assert gate.batches[0] == [1]
    assert sorted(gate.batches[1]) == [2, 3, 4, 5, 6] and len(gate.batches) == 2


def test_an_item_refused_fails_only_its_own_caller() -> None:
    gate = Gate()
    batcher: Batcher[int, int] = Batcher(gate.send)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(batcher.call, 1)
        assert gate.entered.wait(10)
        bad, good = pool.submit(batcher.call, -1), pool.submit(batcher.call, 2)
        until(lambda: waiting(batcher, 2))
        gate.release.set()
        with pytest.raises(Conflict, match="-1 refused"):
            bad.result(10)
        assert (first.result(10), good.result(10)) == (10, 20)


def test_a_failed_send_fails_every_call_of_its_batch_and_only_those() -> None:
    calls: list[list[int]] = []

    def send(items: list[int]) -> Sequence[int]:
        calls.append(items)
        if len(calls) == 1:
            raise FarmError("the API is down")
        return [i for i in items]

    batcher: Batcher[int, int] = Batcher(send)
    with pytest.raises(FarmError, match="down"):
        batcher.call(1)
    assert batcher.call(2) == 2  # the next batch is not poisoned


def test_a_wrong_number_of_answers_fails_the_batch() -> None:
    batcher: Batcher[int, int] = Batcher(lambda items: [1, 2, 3])
    with pytest.raises(FarmError, match="3 answers to a batch of 1"):
        batcher.call(1)


def test_batches_keep_to_their_limit_and_budget() -> None:
    gate = Gate()
    batcher: Batcher[int, int] = Batcher(gate.send, limit=2, budget=100, weight=lambda i: i)
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(batcher.call, 1)
        assert gate.entered.wait(10)
        # Arrival order is fixed by waiting for each to queue before the next.
        later = []
        for n, item in enumerate((2, 3, 4, 150, 5), start=1):
            later.append(pool.submit(batcher.call, item))
            until(lambda n=n: waiting(batcher, n))
        gate.release.set()
        assert [f.result(10) for f in (first, *later)] == [10, 20, 30, 40, 1500, 50]
    # At most 2 a batch; the 150-weight item over the budget goes alone.
    assert gate.batches == [[1], [2, 3], [4], [150], [5]]
