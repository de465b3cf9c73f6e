"""The ``next_dispatched`` mark of a finish: written in batches, at once when the build
ends (issue 10: one write transaction fewer per finished job)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from coordinator_kit import Rig

from farm.coordinator.timeline import MarkBuffer

CHAIN = """
stages: [a, b]
first: {stage: a, script: [x]}
second: {stage: b, script: [y]}
"""


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


def _marks(rig: Rig, build_id: int, name: str) -> dict[str, float]:
    return rig.job(build_id, name).timeline or {}


def test_a_finish_mid_build_is_marked_by_the_next_flush_and_the_last_at_once(rig: Rig) -> None:
    b = rig.start(CHAIN)
    rig.run(b, "first")
    assert "reported" in _marks(rig, b, "first")  # written with the finish itself
    assert "next_dispatched" not in _marks(rig, b, "first")  # waits in the buffer
    rig.coord.flush_marks()
    first = _marks(rig, b, "first")
    assert first["reported"] <= first["next_dispatched"]
    rig.run(b, "second")  # ends the build: written at once, no flush
    assert "next_dispatched" in _marks(rig, b, "second")


def test_a_mark_of_an_attempt_that_was_replaced_is_not_written(rig: Rig) -> None:
    b = rig.start("job: {script: [x], retry: 1}\nother: {script: [y]}")
    rig.run(b, "job", exit_code=0)
    job = rig.job(b, "job")
    rig.store.set_timelines([(job.id, job.attempt + 1, {"reported": 1.0})])
    assert rig.job(b, "job").timeline != {"reported": 1.0}


def test_the_buffer_is_due_by_count_or_age_and_take_empties_it() -> None:
    buf = MarkBuffer(batch=3, delay=0.05)
    assert not buf.add(1, 1, {"a": 1.0})
    assert not buf.add(2, 1, {"a": 2.0})
    assert buf.add(3, 1, {"a": 3.0})  # count
    assert [i[0] for i in buf.take()] == [1, 2, 3] and buf.take() == []
    assert not buf.add(4, 1, {})
    time.sleep(0.06)
    assert buf.add(5, 1, {})  # age of the oldest
