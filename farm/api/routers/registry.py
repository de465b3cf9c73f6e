"""Registry metadata over HTTP: artifact search, provenance of builds, the signing key.

``GET /api/v1/artifacts`` lists artifacts joined with their builds (filter by project,
ref, commit prefix, build, name, kind); downloading one by digest stays at
``GET /api/v1/artifacts/{digest}`` (the jobs router).  Provenance is a signed DSSE
envelope per green build; its public key is served so clients can verify offline.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel

from farm.api.auth import requires
from farm.api.deps import BlobsDep, StoreDep
from farm.api.errors import errors
from farm.api.limits import MAX_ID, BuildIdPath, Line, NoControl
from farm.db.releases import RegistryDb
from farm.domain.auth import Scope
from farm.domain.records import ArtifactListing
from farm.errors import NotFound
from farm.registry.factory import PROVENANCE_KIND
from farm.registry.provenance import PAYLOAD_TYPE, key_id, public_pem

router = APIRouter(prefix="/api/v1", tags=["registry"])


def registry_db(request: Request) -> RegistryDb:
    """The app's :class:`RegistryDb` (set up by the app factory)."""
    return cast(RegistryDb, request.app.state.registry_db)


class ArtifactItem(BaseModel):
    """One artifact with the build it came from."""

    id: int
    build: int
    job: int | None
    job_name: str | None
    name: str
    kind: str
    digest: str
    size: int
    created_at: datetime
    expires_at: datetime | None
    project: str
    ref: str
    commit: str
    build_status: str
    url: str

    @classmethod
    def of(cls, a: ArtifactListing) -> ArtifactItem:
        """From a listing record."""
        return cls(
            id=a.id,
            build=a.build_id,
            job=a.job_id,
            job_name=a.job_name,
            name=a.name,
            kind=a.kind,
            digest=a.digest,
            size=a.size,
            created_at=a.created_at,
            expires_at=a.expires_at,
            project=a.project,
            ref=a.ref,
            commit=a.commit,
            build_status=a.build_status,
            url=f"/api/v1/artifacts/{a.digest}",
        )


@router.get("/artifacts", dependencies=[requires(Scope.READ)], response_model=list[ArtifactItem])
def list_artifacts(
    request: Request,
    project: Line | None = None,
    ref: Line | None = None,
    commit: Annotated[
        str | None,
        Query(max_length=64, pattern=NoControl().pattern, description="full sha or a prefix"),
    ] = None,
    build: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    name: Line | None = None,
    kind: Annotated[
        Line | None, Query(description="archive, dotenv, deliverable, provenance")
    ] = None,
    limit: int = Query(200, ge=1, le=2000),
) -> list[ArtifactItem]:
    """Artifacts matching every given filter, newest first."""
    rows = registry_db(request).search_artifacts(
        project=project, ref=ref, commit=commit, build=build, name=name, kind=kind, limit=limit
    )
    return [ArtifactItem.of(a) for a in rows]


@router.get(
    "/keys/provenance.pub",
    response_class=Response,
    responses={
        200: {
            "description": "The public key, PEM",
            "content": {"application/x-pem-file": {"schema": {"type": "string"}}},
        }
    },
)
def provenance_key(request: Request) -> Response:
    """The farm's ed25519 public key (PEM) that signs every provenance statement."""
    key = cast(Ed25519PrivateKey, request.app.state.signing_key).public_key()
    return Response(
        content=public_pem(key),
        media_type="application/x-pem-file",
        headers={"X-Farm-Key-Id": key_id(key)},
    )


@router.get(
    "/builds/{build_id}/provenance",
    dependencies=[requires(Scope.READ)],
    response_class=Response,
    responses={
        200: {
            "description": "The DSSE envelope (JSON) of the build's provenance",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        **errors(404, 500),
    },
)
def build_provenance(
    build_id: BuildIdPath, request: Request, store: StoreDep, blobs: BlobsDep
) -> Response:
    """The build's signed SLSA provenance (a DSSE envelope), verified against its digest."""
    build = store.get_build(build_id)
    found = registry_db(request).search_artifacts(build=build_id, kind=PROVENANCE_KIND, limit=1)
    if not found:
        why = "provenance is recorded only for successful builds"
        raise NotFound(f"build {build_id} has no provenance ({build.status}; {why})")
    digest = found[0].digest
    data = b"".join(blobs.open_read(digest))  # a whole read: hash-checked by the store
    return Response(
        content=data,
        media_type="application/json",
        headers={
            "Docker-Content-Digest": digest,
            "ETag": f'"{digest}"',
            "X-Farm-Payload-Type": PAYLOAD_TYPE,
        },
    )


class Endpoints(BaseModel):
    """Where clients move blob bytes: the API always, the data plane when there is one."""

    api: str
    blob_data: str | None


@router.get(
    "/registry/endpoints",
    dependencies=[requires(Scope.READ, Scope.WORKER)],
    response_model=Endpoints,
)
def endpoints(request: Request) -> Endpoints:
    """The blob data plane's URL (whole-blob GET/PUT at kernel speed), or null."""
    settings = request.app.state.settings
    data_plane = getattr(request.app.state, "blob_data", None)
    url = None
    if data_plane is not None:
        url = settings.blob_data_url or data_plane.url_for(request.url.hostname or "127.0.0.1")
    return Endpoints(api=str(request.base_url).rstrip("/"), blob_data=url)
