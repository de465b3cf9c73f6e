"""The thread pipelines of the blob data path: order, errors, bounded and stoppable."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from farm.api.routers.blobs import read_ahead
from farm.registry.client import pump


def test_read_ahead_keeps_order_and_runs_on_another_thread() -> None:
    threads: set[int] = set()

    def source() -> Iterator[int]:
        for i in range(100):
            threads.add(threading.get_ident())
            yield i

    assert list(read_ahead(source(), 3)) == list(range(100))
    assert threads and threading.get_ident() not in threads


def test_read_ahead_reraises_after_the_items_before_the_error() -> None:
    def source() -> Iterator[bytes]:
        yield b"a"
        yield b"b"
        raise ValueError("disk on fire")

    got: list[bytes] = []
    with pytest.raises(ValueError, match="disk on fire"):
        for item in read_ahead(source(), 8):
            got.append(item)
    assert got == [b"a", b"b"]


def test_read_ahead_closed_early_stops_and_closes_its_source() -> None:
    produced = 0
    closed = threading.Event()

    def endless() -> Iterator[int]:
        nonlocal produced
        try:
            while True:
                produced += 1
                yield produced
        finally:
            closed.set()

    ahead = read_ahead(endless(), 2)
    assert next(ahead) == 1
    ahead.close()  # returns only once the producer thread is gone
    assert closed.is_set()
    assert produced <= 6  # bounded: it never ran far ahead of the consumer
    assert not any(t.name == "farm-read-ahead" for t in threading.enumerate())


def test_pump_batches_pieces_in_order_without_joining_them() -> None:
    pieces = [bytes([i]) * 1000 for i in range(50)]
    seen: list[bytes] = []
    pump(iter(pieces), seen.append, depth=2, batch_bytes=4096)
    assert seen == pieces
    assert all(a is b for a, b in zip(seen, pieces, strict=True))  # the same objects


def test_pump_stops_on_the_first_sink_error() -> None:
    received = 0

    def chunks() -> Iterator[bytes]:
        nonlocal received
        for _ in range(10_000):
            received += 1
            yield b"x" * 1024

    def sink(chunk: bytes) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        pump(chunks(), sink, depth=2, batch_bytes=1024)
    assert received < 10_000
