"""The worker's one timer thread: callbacks at their times, repeats, cancels."""

from __future__ import annotations

import threading
import time

from farm.worker.ticker import SLACK, Ticker


def test_a_callback_runs_once_at_its_time_or_again_as_it_asks() -> None:
    ticker = Ticker()
    once: list[float] = []
    repeats: list[float] = []
    done = threading.Event()

    def again() -> float | None:
        repeats.append(time.monotonic())
        if len(repeats) == 3:
            done.set()
            return None
        return 0.02

    start = time.monotonic()
    ticker.after(0.05, lambda: once.append(time.monotonic()))
    ticker.after(0.0, again)
    assert done.wait(5)
    time.sleep(0.1)
    assert len(once) == 1 and once[0] - start >= 0.05 - SLACK
    assert len(repeats) == 3 and repeats[2] - repeats[0] >= 0.04 - 2 * SLACK


def test_a_sooner_callback_is_not_held_behind_a_later_one() -> None:
    ticker = Ticker()
    ran = threading.Event()
    ticker.after(60, lambda: None)  # the thread now waits a minute
    start = time.monotonic()
    ticker.after(0.01, ran.set)
    assert ran.wait(5) and time.monotonic() - start < 5


def test_a_canceled_callback_stops_repeating_and_a_failing_one_hurts_no_other() -> None:
    ticker = Ticker()
    count: list[int] = []
    timer = ticker.after(0.0, lambda: count.append(1) or 0.01)

    def boom() -> None:
        raise RuntimeError("chore failed")

    ticker.after(0.0, boom)
    deadline = time.monotonic() + 5
    while len(count) < 3 and time.monotonic() < deadline:  # it repeats after the failure
        time.sleep(0.01)
    timer.cancel()
    time.sleep(0.05)
    seen = len(count)
    time.sleep(0.1)
    assert seen >= 3 and len(count) == seen
