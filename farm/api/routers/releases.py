"""``/api/v1/releases``: promote a green build to an immutable, named version.

``POST {build, version, project?}`` → 201 (200 when that exact release already exists,
so retries are safe); a version is never re-pointed (409), a build that is not green
cannot be released (409 while it runs, 422 once it failed).  ``DELETE`` refuses
(409) while the release is referenced; see :mod:`farm.db.releases` for the rule.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from farm.api.auth import requires
from farm.api.errors import errors
from farm.api.limits import MAX_ID, Line, Version
from farm.api.routers.registry import registry_db
from farm.domain.auth import Scope
from farm.domain.records import ReleaseRecord

router = APIRouter(prefix="/api/v1/releases", tags=["releases"])


class ReleaseRequest(BaseModel):
    """What to release: a build id and the version to call it."""

    build: int = Field(ge=1, le=MAX_ID)
    version: Version
    project: Line | None = None  # must match the build's project when given


class ReleaseOut(BaseModel):
    """A release as the API shows it."""

    project: str
    version: str
    build: int
    ref: str
    commit: str
    deliverable_digest: str
    created_at: datetime
    deliverable_url: str
    provenance_url: str

    @classmethod
    def of(cls, r: ReleaseRecord) -> ReleaseOut:
        """From a release record."""
        return cls(
            project=r.project,
            version=r.version,
            build=r.build_id,
            ref=r.ref,
            commit=r.commit,
            deliverable_digest=r.deliverable_digest,
            created_at=r.created_at,
            deliverable_url=f"/api/v1/artifacts/{r.deliverable_digest}",
            provenance_url=f"/api/v1/builds/{r.build_id}/provenance",
        )


def _location(r: ReleaseRecord) -> str:
    return f"{router.prefix}/{r.project}/{r.version}"


@router.post(
    "",
    dependencies=[requires(Scope.DEPLOY)],
    status_code=201,
    response_model=ReleaseOut,
    responses={
        200: {"model": ReleaseOut, "description": "That exact release already exists"},
        **errors(
            404,
            409,
            422,
            s404="No such build",
            s409="The version names another build, or the build is still running",
            s422="Invalid request, or the build cannot be released (it failed, no deliverable)",
        ),
    },
)
def create_release(body: ReleaseRequest, request: Request, response: Response) -> ReleaseOut:
    """Release a successful build under a new version."""
    release, created = registry_db(request).create_release(body.build, body.version, body.project)
    response.status_code = 201 if created else 200
    response.headers["Location"] = _location(release)
    return ReleaseOut.of(release)


@router.get("", dependencies=[requires(Scope.READ)], response_model=list[ReleaseOut])
def list_releases(
    request: Request, project: Line | None = None, limit: int = Query(100, ge=1, le=1000)
) -> list[ReleaseOut]:
    """Newest releases first, optionally of one project."""
    return [ReleaseOut.of(r) for r in registry_db(request).list_releases(project, limit)]


@router.get(
    "/{project}/{version}",
    dependencies=[requires(Scope.READ)],
    response_model=ReleaseOut,
    responses=errors(404),
)
def get_release(project: Line, version: Version, request: Request) -> ReleaseOut:
    """One release."""
    return ReleaseOut.of(registry_db(request).get_release(project, version))


@router.delete(
    "/{project}/{version}",
    dependencies=[requires(Scope.DEPLOY)],
    status_code=204,
    response_class=Response,
    responses=errors(404, 409, s409="The release is still referenced (a rollout, the latest)"),
)
def delete_release(project: Line, version: Version, request: Request) -> Response:
    """Delete a release that nothing references any more (409 otherwise)."""
    registry_db(request).delete_release(project, version)
    return Response(status_code=204)
