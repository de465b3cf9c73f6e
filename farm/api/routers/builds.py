"""``/api/v1/builds``: submit, inspect, cancel builds; fetch their deliverable."""

from __future__ import annotations

from fastapi import APIRouter, Response

from farm.api.deps import BlobsDep, CoordinatorDep, StoreDep
from farm.api.schemas import BuildOut, BuildRequest
from farm.coordinator.submit import Submission, submit
from farm.errors import NotFound

router = APIRouter(prefix="/api/v1/builds", tags=["builds"])


@router.post("", status_code=201, response_model=BuildOut)
def create_build(body: BuildRequest, coord: CoordinatorDep, response: Response) -> BuildOut:
    """Build a commit: resolve it, read its pipeline, queue its first jobs."""
    build = submit(
        coord,
        Submission(
            repo=body.repo,
            ref=body.ref,
            commit=body.commit,
            variables=tuple(body.variables.items()),
            secrets=tuple(body.secrets.items()),
        ),
    )
    response.headers["Location"] = f"/api/v1/builds/{build.id}"
    return BuildOut.of(build)


@router.get("", response_model=list[BuildOut])
def list_builds(
    store: StoreDep, limit: int = 50, project: str | None = None, ref: str | None = None
) -> list[BuildOut]:
    """Newest builds first (without jobs)."""
    return [BuildOut.of(b) for b in store.list_builds(min(limit, 500), project, ref)]


@router.get("/{build_id}", response_model=BuildOut)
def get_build(build_id: int, store: StoreDep) -> BuildOut:
    """The build document with every job and its artifacts."""
    return BuildOut.of(store.get_build(build_id))


@router.post("/{build_id}/cancel", response_model=BuildOut)
def cancel_build(build_id: int, coord: CoordinatorDep) -> BuildOut:
    """Cancel: waiting jobs never start, running containers are stopped."""
    return BuildOut.of(coord.cancel(build_id))


@router.get("/{build_id}/deliverable")
def get_deliverable(build_id: int, store: StoreDep, blobs: BlobsDep) -> Response:
    """The deliverable manifest of a green build, verified against its digest."""
    build = store.get_build(build_id)
    if not build.deliverable_digest:
        raise NotFound(f"build {build_id} has no deliverable (status {build.status})")
    data = b"".join(blobs.open_read(build.deliverable_digest))
    return Response(
        content=data,
        media_type="application/json",
        headers={
            "Docker-Content-Digest": build.deliverable_digest,
            "ETag": f'"{build.deliverable_digest}"',
        },
    )
