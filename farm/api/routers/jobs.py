"""``/api/v1/jobs``: one job, its log (readable while it runs), play, retry, artifacts
(whole archives by digest, or one file out of a job's archive by its path)."""

from __future__ import annotations

import mimetypes
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Annotated, BinaryIO

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from farm.api.auth import requires
from farm.api.deps import BlobsDep, CoordinatorDep, StoreDep
from farm.api.errors import errors
from farm.api.limits import MAX_ID, JobIdPath
from farm.api.routers.blobs import BLOB_READ_RESPONSES, blob_response
from farm.api.schemas import ArtifactOut, JobOut
from farm.domain.auth import Scope
from farm.domain.statuses import ArtifactKind
from farm.errors import InvalidRequest, NotFound, UnsafeArchive
from farm.registry.archive import member_path, open_member
from farm.registry.store.base import BlobStore
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


@router.post(
    "/jobs/{job_id}/retry",
    dependencies=[requires(Scope.SUBMIT)],
    response_model=JobOut,
    responses=errors(404, 409, s409="The job is not failed or canceled"),
)
def retry_job(job_id: JobIdPath, coord: CoordinatorDep, store: StoreDep) -> JobOut:
    """Run a failed or canceled job again as its next attempt (earlier attempts' logs stay
    readable with ``?attempt=N``); the jobs it skipped run again as the DAG requires."""
    coord.retry(store.get_job(job_id).build_id, job_id)
    return JobOut.of(store.get_job(job_id))


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


# Served inline only when a browser cannot run them; anything else is a download, so an
# artifact's HTML never runs with the API's (dashboard's) origin.
_INLINE_TYPES = frozenset({"text/plain", "application/json"})


@router.get(
    "/jobs/{job_id}/artifacts/{path:path}",
    dependencies=[requires(Scope.READ)],
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The file's bytes, out of the job's artifacts archive",
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
        },
        **errors(404, 422, s422="The path is absolute or contains '..'"),
    },
)
def get_artifact_file(
    job_id: JobIdPath, path: str, store: StoreDep, blobs: BlobsDep
) -> StreamingResponse:
    """One file of the job's artifacts (``GET /jobs/{id}/artifacts`` lists the files)."""
    try:
        wanted = member_path(path)
    except UnsafeArchive as exc:
        raise InvalidRequest(str(exc)) from None
    job = store.get_job(job_id)
    archives = [a for a in job.artifacts if a.kind == ArtifactKind.ARCHIVE]
    for art in archives:
        if art.files and wanted not in art.files:
            continue  # its listing says it is not there: do not open it
        stack = ExitStack()
        found = open_member(stack.enter_context(_seekable(blobs, art.digest)), wanted)
        if found is None:
            stack.close()
            continue
        size, chunks = found
        guessed = mimetypes.guess_type(wanted)[0] or ""
        inline = guessed.startswith("text/") or guessed in _INLINE_TYPES
        name = wanted.rsplit("/", 1)[-1].replace('"', "")
        return StreamingResponse(
            _closing(chunks, stack),
            media_type="text/plain; charset=utf-8" if inline else "application/octet-stream",
            headers={
                "Content-Length": str(size),
                "X-Content-Type-Options": "nosniff",
                "Content-Disposition": f'{"inline" if inline else "attachment"}; filename="{name}"',
                "X-Farm-Artifact-Digest": art.digest,
            },
        )
    if not archives:
        raise NotFound(f"job {job_id} has no artifacts archive")
    raise NotFound(f"job {job_id}'s artifacts have no file {wanted!r}")


def _closing(chunks: Iterator[bytes], stack: ExitStack) -> Iterator[bytes]:
    with stack:
        yield from chunks


def _seekable(blobs: BlobStore, digest: str) -> BinaryIO:
    """The blob as a seekable file: the store's own file (verified first), else a
    spooled copy (a whole-blob read verifies as it goes)."""
    local = blobs.path_for(digest)
    if local is not None:
        blobs.verify(digest, cached=True)
        return open(local, "rb")  # closed by the caller's ExitStack
    spool = tempfile.TemporaryFile()  # noqa: SIM115 - closed by the caller's ExitStack
    for chunk in blobs.open_read(digest):
        spool.write(chunk)
    spool.seek(0)
    return spool
