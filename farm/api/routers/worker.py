"""``/api/v1/worker``: what workers call — claim, log/heartbeat, finish, liveness.

The bodies are the worker protocol's messages (:mod:`farm.domain.messages`); a request
in a protocol this API does not speak is refused with 426 before anything changes.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from farm.api.deps import CoordinatorDep, SettingsDep, StoreDep
from farm.api.errors import errors
from farm.api.limits import JobIdPath
from farm.coordinator.assignment import assignment
from farm.coordinator.service import JobResult
from farm.domain.messages import (
    Assignment,
    ClaimRequest,
    FinishReply,
    FinishReport,
    LiveReply,
    LiveRequest,
    LogReply,
    LogRequest,
    check_protocol,
)
from farm.errors import Conflict

router = APIRouter(prefix="/api/v1/worker", tags=["worker"])

_MISMATCH: dict[int | str, dict[str, Any]] = errors(426)


@router.post(
    "/jobs/{job_id}/claim",
    response_model=Assignment,
    responses=errors(
        404,
        409,
        426,
        s404="No such job",
        s409="The attempt is stale, already running or finished",
    ),
)
def claim(
    job_id: JobIdPath,
    body: ClaimRequest,
    coord: CoordinatorDep,
    store: StoreDep,
    settings: SettingsDep,
) -> Assignment:
    """Take an attempt: 409 if it is stale, already running or finished (duplicate message)."""
    check_protocol(body.protocol)
    job = coord.claim(job_id, body.attempt, body.worker)
    if job is None:
        store.get_job(job_id)  # NotFound (404) when there is no such job at all
        raise Conflict(f"job {job_id} attempt {body.attempt} is not waiting for a worker")
    return assignment(store.get_build(job.build_id), job, settings)


@router.post("/jobs/{job_id}/log", response_model=LogReply, responses=_MISMATCH)
def append_log(job_id: JobIdPath, body: LogRequest, coord: CoordinatorDep) -> LogReply:
    """Append output; the answer says whether the attempt may go on (cancel, reassignment)."""
    check_protocol(body.protocol)
    alive = coord.heartbeat(job_id, body.attempt)
    accepted = coord.append_log(job_id, body.attempt, body.data, body.offset) if body.data else True
    return LogReply(continue_=alive, accepted=accepted)


@router.post(
    "/jobs/{job_id}/finish",
    response_model=FinishReply,
    responses=errors(404, 426, s404="No such job"),
)
def finish(job_id: JobIdPath, body: FinishReport, coord: CoordinatorDep) -> FinishReply:
    """Report the end of an attempt; stale reports are ignored."""
    check_protocol(body.protocol)
    job = coord.finish(
        job_id,
        body.attempt,
        JobResult(
            exit_code=body.exit_code,
            reason=body.reason,
            message=body.message,
            artifacts=tuple(body.artifacts),
            coverage=body.coverage,
        ),
    )
    return FinishReply(status=job.status, attempt=job.attempt)


@router.post("/live", response_model=LiveReply, responses=_MISMATCH)
def live(body: LiveRequest, coord: CoordinatorDep) -> LiveReply:
    """Which (job, attempt) pairs are still running: reapers remove the rest."""
    check_protocol(body.protocol)
    return LiveReply(live=coord.live_attempts(list(body.attempts)))
