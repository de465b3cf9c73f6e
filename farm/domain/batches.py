"""Batched worker messages: several claims, or several finish reports, in one request.

``POST /api/v1/worker/claims`` and ``POST /api/v1/worker/reports`` take what the
per-job routes take, for up to :data:`MAX_BATCH` attempts at once, and answer one
result per item, in order: its answer, or the error its own request would have got
(status, error class, one-line detail). One item's failure never fails the others.
A worker sends them when its slots' calls overlap (:mod:`farm.worker.batcher`); the
per-job routes stay, for a lone call and for workers that batch nothing.

Additive within protocol 3: an API without these routes answers 404 for the route
itself (never for an item: a missing job is an item's 404), and the worker goes back to
one request per call.
"""

from __future__ import annotations

from pydantic import Field

from farm.domain.messages import (
    Assignment,
    Attempt,
    FinishReply,
    FinishReport,
    Id,
    Name,
    _Message,
    _Versioned,
)

MAX_BATCH = 64  # items in one batched request


class ItemError(_Message):
    """Why one item of a batch was refused: what its own request would have answered."""

    status: int = Field(ge=400, le=599, description="the HTTP status of the per-job route")
    error: str = Field(description="the error's class in farm's error tree (e.g. Conflict)")
    detail: str = Field(description="what went wrong, one line")


class ClaimItem(_Message):
    """One claim of a batch: as ``POST …/jobs/{job_id}/claim`` would take it."""

    job_id: Id
    attempt: Attempt
    worker: Name


class ClaimBatch(_Versioned):
    """Claims of several attempts (``POST /api/v1/worker/claims``)."""

    claims: list[ClaimItem] = Field(min_length=1, max_length=MAX_BATCH)


class ClaimResult(_Message):
    """One claim's answer: its assignment, or its error."""

    assignment: Assignment | None = None
    failure: ItemError | None = None


class ClaimBatchReply(_Message):
    """One result per claim, in the order asked."""

    results: list[ClaimResult]


class FinishItem(_Message):
    """One report of a batch: as ``POST …/jobs/{job_id}/finish`` would take it."""

    job_id: Id
    report: FinishReport


class FinishBatch(_Versioned):
    """Finish reports of several attempts (``POST /api/v1/worker/reports``)."""

    reports: list[FinishItem] = Field(min_length=1, max_length=MAX_BATCH)


class FinishResult(_Message):
    """One report's answer: the job's status after it, or its error."""

    reply: FinishReply | None = None
    failure: ItemError | None = None


class FinishBatchReply(_Message):
    """One result per report, in the order sent."""

    results: list[FinishResult]
