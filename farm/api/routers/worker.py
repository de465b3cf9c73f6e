"""``/api/v1/worker``: what workers call — claim, log/heartbeat, finish, liveness.

The bodies are the worker protocol's messages (:mod:`farm.domain.messages`); a request
in a protocol this API does not speak is refused with 426 before anything changes.

Only a token with the ``worker`` scope gets here, and an attempt belongs to the worker
that claimed it: the claim answers a fresh job token (only its hash is kept), and a log
or finish for the job's current attempt must carry it and come with the same worker
token, else 403. A forged "exit 0" for a job that never ran is refused.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Response

from farm.api.auth import PrincipalDep, requires
from farm.api.deps import CoordinatorDep, SettingsDep, StoreDep
from farm.api.errors import errors, item_error
from farm.api.limits import JobIdPath
from farm.api.schemas import model_response
from farm.coordinator.assignment import assignment
from farm.coordinator.reports import Advances, JobResult
from farm.coordinator.service import Coordinator
from farm.db.repository import Store
from farm.db.rows import Holder
from farm.domain.auth import Principal, Scope, hash_token, new_token, same_hash
from farm.domain.batches import (
    ClaimBatch,
    ClaimBatchReply,
    ClaimResult,
    FinishBatch,
    FinishBatchReply,
    FinishResult,
)
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
from farm.domain.records import BuildRecord, JobRecord
from farm.domain.secrets import ProjectSecrets
from farm.errors import Conflict, Forbidden
from farm.settings import Settings

router = APIRouter(prefix="/api/v1/worker", tags=["worker"], dependencies=[requires(Scope.WORKER)])

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
    principal: PrincipalDep,
) -> Response:
    """Take an attempt: 409 if it is stale, already running or finished (duplicate message)."""
    check_protocol(body.protocol)
    given = _claim_one(job_id, body.attempt, body.worker, coord, store, settings, principal)
    return model_response(given)


@router.post("/claims", response_model=ClaimBatchReply, responses=_MISMATCH)
def claims(
    body: ClaimBatch,
    coord: CoordinatorDep,
    store: StoreDep,
    settings: SettingsDep,
    principal: PrincipalDep,
) -> Response:
    """Several claims at once (a worker's slots claiming together): one result each, in
    order, the assignment or what ``…/jobs/{id}/claim`` would have answered."""
    check_protocol(body.protocol)
    results: list[ClaimResult] = []
    reads = _Reads()
    for item in body.claims:
        try:
            given = _claim_one(
                item.job_id, item.attempt, item.worker, coord, store, settings, principal, reads
            )
            results.append(ClaimResult(assignment=given))
        except Exception as exc:
            results.append(ClaimResult(failure=item_error(exc)))
    return model_response(ClaimBatchReply(results=results))


def _claim_one(
    job_id: int,
    attempt: int,
    worker: str,
    coord: Coordinator,
    store: Store,
    settings: Settings,
    principal: Principal,
    reads: _Reads | None = None,
) -> Assignment:
    """One claim: the attempt's assignment with its fresh job token (see the module doc).

    ``reads``: what the claims of one batch share (their builds' and projects' rows).
    """
    job_token = new_token()
    job = coord.claim(job_id, attempt, worker, holder=(principal.token_id, hash_token(job_token)))
    if job is None:
        store.get_job(job_id)  # NotFound (404) when there is no such job at all
        raise Conflict(f"job {job_id} attempt {attempt} is not waiting for a worker")
    reads = reads or _Reads()
    build = _claim_build(store, job, reads)
    secrets = reads.secrets.get(build.project)
    if secrets is None:
        secrets = reads.secrets[build.project] = store.project_secrets(build.project)
    given = assignment(build, job, settings, secrets)
    return given.model_copy(update={"job_token": job_token})


@dataclasses.dataclass
class _Reads:
    """Rows the claims of one batch share: builds by id, project secrets by project."""

    builds: dict[int, BuildRecord] = dataclasses.field(default_factory=dict)
    secrets: dict[str, ProjectSecrets] = dataclasses.field(default_factory=dict)


def _claim_build(store: Store, job: JobRecord, reads: _Reads) -> BuildRecord:
    """The build with only the jobs its assignment reads: the job and the jobs whose
    artifacts it may receive (its ``dependencies``, else its ``needs``, else every
    earlier-stage job), so a claim costs O(its upstream), not O(the build's jobs)
    (``scale_bench`` part 4: 13x slower on a 5,000-job build than on a 50-job one when
    it read the whole build)."""
    build = reads.builds.get(job.build_id)
    if build is None:
        build = reads.builds[job.build_id] = store.get_build(job.build_id, with_jobs=False)
    spec = job.spec
    if spec.dependencies is not None:
        upstream = store.jobs_of_build(build.id, names=set(spec.dependencies))
    elif spec.needs is not None:
        names = {n.job for n in spec.needs}
        upstream = store.jobs_of_build(build.id, names=names) if names else []
    else:
        earlier = build.stages[: build.stages.index(job.stage)] if job.stage in build.stages else ()
        upstream = store.jobs_of_build(build.id, stages=set(earlier)) if earlier else []
    jobs = sorted({j.id: j for j in (*upstream, job)}.values(), key=lambda j: j.position)
    return dataclasses.replace(build, jobs=tuple(jobs))


def _check_holder(
    holder: Holder | None, job_id: int, attempt: int, job_token: str, principal: Principal
) -> None:
    """Forbidden unless the caller holds the job's current attempt (see the module doc).

    A report on another attempt is let through: the coordinator answers it as stale and
    it changes nothing.
    """
    if holder is None or holder[0] != attempt:
        return
    _, token_id, token_hash = holder
    if token_hash is None or not same_hash(hash_token(job_token), token_hash):
        raise Forbidden(f"job {job_id} attempt {attempt} was not claimed with this job token")
    if principal.token_id is not None and token_id != principal.token_id:
        raise Forbidden(f"job {job_id} attempt {attempt} belongs to another worker")


@router.post(
    "/jobs/{job_id}/log",
    response_model=LogReply,
    responses=errors(403, 426, s403="Not the holder of this attempt"),
)
def append_log(
    job_id: JobIdPath,
    body: LogRequest,
    coord: CoordinatorDep,
    store: StoreDep,
    principal: PrincipalDep,
) -> Response:
    """Append output; the answer says whether the attempt may go on (cancel, reassignment)."""
    check_protocol(body.protocol)
    _check_holder(store.attempt_holder(job_id), job_id, body.attempt, body.job_token, principal)
    alive, accepted = coord.beat_and_log(job_id, body.attempt, body.data, body.offset)
    return model_response(LogReply(continue_=alive, accepted=accepted))


@router.post(
    "/jobs/{job_id}/finish",
    response_model=FinishReply,
    responses=errors(403, 404, 426, s403="Not the holder of this attempt", s404="No such job"),
)
def finish(
    job_id: JobIdPath,
    body: FinishReport,
    coord: CoordinatorDep,
    store: StoreDep,
    principal: PrincipalDep,
) -> Response:
    """Report the end of an attempt (and the last of its output); stale reports are
    ignored."""
    check_protocol(body.protocol)
    return model_response(_finish_one(job_id, body, coord, store, principal))


@router.post("/reports", response_model=FinishBatchReply, responses=_MISMATCH)
def reports(
    body: FinishBatch,
    coord: CoordinatorDep,
    store: StoreDep,
    principal: PrincipalDep,
) -> Response:
    """Several finish reports at once: one result each, in order, the job's status after
    it or what ``…/jobs/{id}/finish`` would have answered."""
    check_protocol(body.protocol)
    results: list[FinishResult] = []
    batch = Advances()
    for item in body.reports:
        try:
            check_protocol(item.report.protocol)
            reply = _finish_one(item.job_id, item.report, coord, store, principal, batch)
            results.append(FinishResult(reply=reply))
        except Exception as exc:
            results.append(FinishResult(failure=item_error(exc)))
    # Should this fail, the whole request fails: each report is sent again, and a report
    # of an attempt already recorded completes its build's advance (ReportsMixin.finish).
    coord.advance_batch(batch)
    return model_response(FinishBatchReply(results=results))


def _finish_one(
    job_id: int,
    body: FinishReport,
    coord: Coordinator,
    store: Store,
    principal: Principal,
    batch: Advances | None = None,
) -> FinishReply:
    """One finish report, checked against the attempt's holder, then applied."""
    job, holder = store.job_and_holder(job_id)
    _check_holder(holder, job_id, body.attempt, body.job_token, principal)
    job = coord.finish(
        job_id,
        body.attempt,
        JobResult(
            exit_code=body.exit_code,
            reason=body.reason,
            message=body.message,
            artifacts=tuple(body.artifacts),
            coverage=body.coverage,
            timeline={str(k): v for k, v in body.timeline.items()} if body.timeline else None,
            tests=body.tests.model_dump(mode="json") if body.tests else None,
        ),
        text=body.log.data if body.log else "",
        offset=body.log.offset if body.log else None,
        job=job,
        batch=batch,
    )
    return FinishReply(status=job.status, attempt=job.attempt)


@router.post("/live", response_model=LiveReply, responses=_MISMATCH)
def live(body: LiveRequest, coord: CoordinatorDep) -> Response:
    """Which (job, attempt) pairs are still running: reapers remove the rest."""
    check_protocol(body.protocol)
    return model_response(LiveReply(live=coord.live_attempts(list(body.attempts))))
