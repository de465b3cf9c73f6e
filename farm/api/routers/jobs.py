"""``/api/v1/jobs``: one job, its log (readable while it runs), play, artifacts."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from farm.api.deps import BlobsDep, CoordinatorDep, StoreDep
from farm.api.routers.blobs import blob_response
from farm.api.schemas import ArtifactOut, JobOut
from farm.errors import NotFound

router = APIRouter(prefix="/api/v1", tags=["jobs"])


@router.get("/jobs/{job_id}", response_model=JobOut)
def get_job(job_id: int, store: StoreDep) -> JobOut:
    """One job."""
    return JobOut.of(store.get_job(job_id))


@router.get("/jobs/{job_id}/log")
def get_log(job_id: int, store: StoreDep, after: int = 0, attempt: int | None = None) -> Response:
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


@router.post("/jobs/{job_id}/play", response_model=JobOut)
def play_job(job_id: int, coord: CoordinatorDep) -> JobOut:
    """Start a manual job."""
    return JobOut.of(coord.play(job_id))


@router.get("/jobs/{job_id}/artifacts", response_model=list[ArtifactOut])
def job_artifacts(job_id: int, store: StoreDep) -> list[ArtifactOut]:
    """Artifacts a job produced."""
    return [ArtifactOut.of(a) for a in store.get_job(job_id).artifacts]


@router.api_route("/artifacts/{digest}", methods=["GET", "HEAD"])
def get_artifact(digest: str, request: Request, store: StoreDep, blobs: BlobsDep) -> Response:
    """Download an artifact by digest (verified; Range supported)."""
    if not store.find_artifacts(digest):
        raise NotFound(f"no artifact with digest {digest}")
    return blob_response(blobs, digest, request)
