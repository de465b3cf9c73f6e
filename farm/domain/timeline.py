"""A job attempt's timeline: where its time went, from queued to the next job dispatched.

Marks are epoch seconds. The coordinator records ``queued`` (the broker took the
message), ``claimed`` (a worker's claim passed its compare-and-set), ``reported`` (the
finish report arrived) and ``next_dispatched`` (the advance that report triggered has
sent what became ready); the worker sends the rest in its finish report
(:class:`farm.domain.messages.FinishReport`). A job whose result was reused
(``cached``) has ``queued``/``reused`` only.
"""

from __future__ import annotations

from collections.abc import Mapping

# Every mark, in the order they happen (worker marks between claimed and reported).
MARKS: tuple[str, ...] = (
    "queued",
    "claimed",
    "worker_claimed",
    "inputs_ready",
    "container_create",
    "container_started",
    "container_exited",
    "outputs_stored",
    "report_sent",
    "reported",
    "next_dispatched",
    "reused",
)
WORKER_MARKS = frozenset(MARKS[2:9])

# The slices shown by ``farm status --timings``: (name, from mark, to mark).
SLICES: tuple[tuple[str, str, str], ...] = (
    ("dispatch", "queued", "claimed"),  # broker → worker → claim answered
    ("inputs", "worker_claimed", "inputs_ready"),  # snapshot + artifacts laid out
    ("create", "container_create", "container_started"),  # docker create + start
    ("run", "container_started", "container_exited"),  # the job's own time
    ("outputs", "container_exited", "outputs_stored"),  # artifacts packed + uploaded
    ("report", "outputs_stored", "reported"),  # finish report delivered
    ("advance", "reported", "next_dispatched"),  # DAG advanced, next jobs sent
)


def merge(worker: Mapping[str, float] | None, **coordinator: float | None) -> dict[str, float]:
    """The stored timeline: known worker marks and the coordinator's, in mark order."""
    marks: dict[str, float] = {}
    for name, value in (worker or {}).items():
        if name in WORKER_MARKS:
            marks[name] = float(value)
    for name, mark in coordinator.items():
        if name in MARKS and mark is not None:
            marks[name] = float(mark)
    return {name: marks[name] for name in MARKS if name in marks}


def slices(timeline: Mapping[str, float]) -> dict[str, float]:
    """Seconds spent in each slice whose two marks are known."""
    out: dict[str, float] = {}
    for name, start, end in SLICES:
        if start in timeline and end in timeline:
            out[name] = max(0.0, timeline[end] - timeline[start])
    return out


def overhead(timeline: Mapping[str, float]) -> float | None:
    """queued → next_dispatched minus the container's own run: what the farm added."""
    total = _span(timeline, "queued", "next_dispatched")
    run = _span(timeline, "container_started", "container_exited")
    if total is None or run is None:
        return None
    return max(0.0, total - run)


def _span(timeline: Mapping[str, float], start: str, end: str) -> float | None:
    if start in timeline and end in timeline:
        return timeline[end] - timeline[start]
    return None
