"""``/api/v1/worker``: what workers call — claim, log/heartbeat, finish, liveness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from farm.api.deps import CoordinatorDep, SettingsDep, StoreDep
from farm.api.schemas import ClaimRequest, FinishRequest, LiveRequest, LogRequest
from farm.coordinator.assignment import assignment
from farm.coordinator.service import JobResult
from farm.errors import Conflict

router = APIRouter(prefix="/api/v1/worker", tags=["worker"])


class FinishBody(FinishRequest):
    """A finish report with the coverage the worker read from the log (``coverage:``)."""

    coverage: float | None = None


@router.post("/jobs/{job_id}/claim")
def claim(
    job_id: int,
    body: ClaimRequest,
    coord: CoordinatorDep,
    store: StoreDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    """Take an attempt: 409 if it is stale, already running or finished (duplicate message)."""
    job = coord.claim(job_id, body.attempt, body.worker)
    if job is None:
        raise Conflict(f"job {job_id} attempt {body.attempt} is not waiting for a worker")
    return assignment(store.get_build(job.build_id), job, settings)


@router.post("/jobs/{job_id}/log")
def append_log(job_id: int, body: LogRequest, coord: CoordinatorDep) -> dict[str, bool]:
    """Append output; the answer says whether the attempt may go on (cancel, reassignment)."""
    alive = coord.heartbeat(job_id, body.attempt)
    accepted = coord.append_log(job_id, body.attempt, body.data) if body.data else True
    return {"continue": alive, "accepted": accepted}


@router.post("/jobs/{job_id}/finish")
def finish(job_id: int, body: FinishBody, coord: CoordinatorDep) -> dict[str, Any]:
    """Report the end of an attempt; stale reports are ignored."""
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
    return {"status": job.status, "attempt": job.attempt}


@router.post("/live")
def live(body: LiveRequest, coord: CoordinatorDep) -> dict[str, list[bool]]:
    """Which (job, attempt) pairs are still running: reapers remove the rest."""
    return {"live": coord.live_attempts([(j, a) for j, a in body.attempts])}
