"""``/api/v1/builds``: submit, inspect, cancel builds; fetch their deliverable."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from farm.api.auth import PrincipalDep, check_repo_access, requires
from farm.api.deps import BlobsDep, CoordinatorDep, SettingsDep, StoreDep
from farm.api.errors import errors
from farm.api.limits import MAX_ID, BuildIdPath, Line
from farm.api.schemas import BuildOut, BuildRequest, build_document
from farm.coordinator.submit import Submission, start_build
from farm.domain.auth import Scope
from farm.domain.statuses import BuildStatus
from farm.errors import NotFound

router = APIRouter(prefix="/api/v1/builds", tags=["builds"])


@router.post(
    "",
    dependencies=[requires(Scope.SUBMIT)],
    status_code=201,
    response_model=BuildOut,
    responses=errors(
        403,
        422,
        s403="The token lacks submit, or the repo is a path on the farm's disk and the "
        "token is not admin (FARM_LOCAL_REPO_SCOPE)",
        s422="Invalid request; or the repository, ref or commit cannot be read; or the "
        "pipeline cannot run (``problems`` lists every file:line:col)",
    ),
)
def create_build(
    body: BuildRequest,
    coord: CoordinatorDep,
    store: StoreDep,
    principal: PrincipalDep,
    settings: SettingsDep,
) -> Response:
    """Build a commit: resolve it, read its pipeline, queue its first jobs."""
    check_repo_access(principal, body.repo, settings)
    build_id = start_build(
        coord,
        Submission(
            repo=body.repo,
            ref=body.ref,
            commit=body.commit,
            variables=tuple(body.variables.items()),
            secrets=tuple(body.secrets.items()),
            no_cache=body.no_cache,
        ),
    )
    return _document(store, build_id, status_code=201, location=True)


@router.get("", dependencies=[requires(Scope.READ)], response_model=list[BuildOut])
def list_builds(
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=MAX_ID, description="at most 500 are listed")] = 50,
    project: Line | None = None,
    ref: Line | None = None,
    status: Annotated[BuildStatus | None, Query(description="only builds in this status")] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_ID, description="skip the newest N")] = 0,
) -> list[BuildOut]:
    """Newest builds first (without jobs), filtered by project, ref and status."""
    found = store.list_builds(min(limit, 500), project, ref, status=status, offset=offset)
    return [BuildOut.of(b) for b in found]


@router.get(
    "/{build_id}",
    dependencies=[requires(Scope.READ)],
    response_model=BuildOut,
    responses=errors(404),
)
def get_build(
    build_id: BuildIdPath,
    store: StoreDep,
    jobs: Annotated[
        bool, Query(description="false: the build's own fields only (`jobs` empty), to poll")
    ] = True,
) -> Response:
    """The build document with every job and its artifacts."""
    return _document(store, build_id, with_jobs=jobs)


@router.post(
    "/{build_id}/cancel",
    dependencies=[requires(Scope.SUBMIT)],
    response_model=BuildOut,
    responses=errors(404, 409),
)
def cancel_build(build_id: BuildIdPath, coord: CoordinatorDep, store: StoreDep) -> Response:
    """Cancel: waiting jobs never start, running containers are stopped."""
    coord.cancel(build_id)
    return _document(store, build_id)


@router.post(
    "/{build_id}/retry",
    dependencies=[requires(Scope.SUBMIT)],
    response_model=BuildOut,
    responses=errors(404, 409, s409="The build has no failed or canceled job"),
)
def retry_build(build_id: BuildIdPath, coord: CoordinatorDep, store: StoreDep) -> Response:
    """Retry every failed and canceled job (each as its next attempt); the jobs they
    skipped run again, and a finished build runs again."""
    coord.retry(build_id)
    return _document(store, build_id)


def _document(
    store: StoreDep,
    build_id: int,
    *,
    with_jobs: bool = True,
    status_code: int = 200,
    location: bool = False,
) -> Response:
    # Two queries and no re-validation of every job: fast for a 10,000-job build.
    if with_jobs:
        body = build_document(*store.job_lines(build_id))
    else:  # one primary-key read, whatever the build's size
        body = build_document(store.get_build(build_id, with_jobs=False), [])
    headers = {"Location": f"/api/v1/builds/{build_id}"} if location else None
    return Response(body, status_code, headers, media_type="application/json")


@router.get(
    "/{build_id}/deliverable",
    dependencies=[requires(Scope.READ)],
    response_class=Response,
    responses={
        200: {
            "description": "The deliverable manifest (JSON), as stored under its digest",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        **errors(404, 500),
    },
)
def get_deliverable(build_id: BuildIdPath, store: StoreDep, blobs: BlobsDep) -> Response:
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
