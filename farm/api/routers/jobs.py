"""``/api/v1/jobs``: one job, its log (readable while it runs), play, artifacts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from farm.api.auth import requires
from farm.api.deps import BlobsDep, CoordinatorDep, StoreDep
from farm.api.errors import errors
from farm.api.limits import MAX_ID, JobIdPath
from farm.api.routers.blobs import BLOB_READ_RESPONSES, blob_response
from farm.api.schemas import ArtifactOut, JobOut
from farm.domain.auth import Scope
from farm.errors import NotFound
from farm.registry.store.digests import DIGEST_RE

router = APIRouter(prefix="/api/v1", tags=["jobs"])


@router.get(
    "/jobs/{job_id}",
    dependencies=[requires(Scope.READ)],
    response_model=JobOut,
    responses=errors(404),
)
def get_job(job_id: JobIdPath, store: StoreDep) -> JobOut:
    """One job."""
    return JobOut.of(store.get_job(job_id))


_LOG_HEADERS = {
    name: {"description": description, "schema": {"type": "string"}}
    for name, description in (
        ("X-Farm-Log-Cursor", "pass it as ``after`` to read on"),
        ("X-Farm-Job-Status", "the job's status now"),
        ("X-Farm-Job-Attempt", "the attempt whose log this is"),
    )
}


@router.get(
    "/jobs/{job_id}/log",
    dependencies=[requires(Scope.READ)],
    response_class=Response,
    responses={
        200: {
            "description": "The log text after the cursor",
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "headers": _LOG_HEADERS,
        },
        **errors(404),
    },
)
def get_log(
    job_id: JobIdPath,
    store: StoreDep,
    after: Annotated[int, Query(ge=0, le=MAX_ID, description="a cursor from the last read")] = 0,
    attempt: Annotated[
        int | None, Query(ge=1, le=2**31 - 1, description="default: the current attempt")
    ] = None,
) -> Response:
    """Log text after cursor ``after``; headers carry the next cursor and the job status."""
    job = store.get_job(job_id)
    which = attempt or job.attempt
    text, cursor = store.read_log(job_id, which, after)
    return Response(
        content=text,
        media_type="text/plain; charset=utf-8",
        headers={
            "X-Farm-Log-Cursor": str(cursor),
            "X-Farm-Job-Status": job.status,
            "X-Farm-Job-Attempt": str(which),
        },
    )


@router.post(
    "/jobs/{job_id}/play",
    dependencies=[requires(Scope.SUBMIT)],
    response_model=JobOut,
    responses=errors(404, 409),
)
def play_job(job_id: JobIdPath, coord: CoordinatorDep) -> JobOut:
    """Start a manual job."""
    return JobOut.of(coord.play(job_id))


@router.get(
    "/jobs/{job_id}/artifacts",
    dependencies=[requires(Scope.READ)],
    response_model=list[ArtifactOut],
    responses=errors(404),
)
def job_artifacts(job_id: JobIdPath, store: StoreDep) -> list[ArtifactOut]:
    """Artifacts a job produced."""
    return [ArtifactOut.of(a) for a in store.get_job(job_id).artifacts]


def _artifact(digest: str, request: Request, store: StoreDep, blobs: BlobsDep) -> Response:
    if DIGEST_RE.fullmatch(digest) is None or not store.find_artifacts(digest):
        raise NotFound(f"no artifact with digest {digest[:80]!r}")
    return blob_response(blobs, digest, request)


# GET and HEAD are two operations (each its own operationId), as on /api/v1/blobs.
@router.get(
    "/artifacts/{digest}",
    dependencies=[requires(Scope.READ)],
    response_class=Response,
    responses=BLOB_READ_RESPONSES,
)
def get_artifact(digest: str, request: Request, store: StoreDep, blobs: BlobsDep) -> Response:
    """Download an artifact by digest (verified; ``Range: bytes=a-b`` gives 206)."""
    return _artifact(digest, request, store, blobs)


@router.head(
    "/artifacts/{digest}",
    dependencies=[requires(Scope.READ)],
    response_class=Response,
    responses=BLOB_READ_RESPONSES,
)
def head_artifact(digest: str, request: Request, store: StoreDep, blobs: BlobsDep) -> Response:
    """An artifact's headers (size, digest) without its bytes; 404 if there is none."""
    return _artifact(digest, request, store, blobs)
