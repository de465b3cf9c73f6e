"""HTTP API of the blob store: how workers on other hosts move bytes by digest.

Reads: ``HEAD``/``GET /api/v1/blobs/{digest}`` (Range supported).  Writes: a
monolithic streaming ``PUT /api/v1/blobs/{digest}``, or an OCI-like resumable
session under ``/api/v1/blobs/uploads``.  Bodies are streamed through a worker
thread into the store and never held in memory.  Error responses carry the
FarmError class name in ``X-Farm-Error`` so the client can re-raise it exactly.
"""

from __future__ import annotations

import contextlib
import queue
import re
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any, TypeVar, cast

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel
from starlette.requests import ClientDisconnect

from farm.api.auth import requires
from farm.api.errors import errors
from farm.domain.auth import Scope
from farm.errors import FarmError
from farm.registry.store import BlobStore
from farm.registry.store.digests import digest_hex, upload_error
from farm.registry.transfer.wire import BLOBS, PREVERIFY_MAX_BYTES, parse_range

router = APIRouter(prefix=BLOBS, tags=["blobs"])

DEFAULT_MAX_BLOB_BYTES = 10 * 1024**3
_CONTENT_RANGE_RE = re.compile(r"(?:bytes )?(\d+)-(\d+)(?:/(?:\d+|\*))?")
T = TypeVar("T")


# A PUT hands its thread up to 4 MiB at a time; resumable PATCHes hand over every piece
# so the session's offset shows each byte that arrived before a dropped connection.
PUT_BATCH_BYTES = 4 * 1024 * 1024
# Items a read_ahead thread may run ahead: body pieces of <= ~320 KiB on a PUT,
# 4 MiB blob chunks on a GET (so memory stays flat: a few MiB per transfer).
PUT_AHEAD = 16
GET_AHEAD = 2
_DONE = object()


class BlobOut(BaseModel):
    """A stored blob."""

    digest: str
    size: int


def _header(description: str) -> dict[str, Any]:
    return {"description": description, "schema": {"type": "string"}}


_BYTES = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
_BLOB_HEADERS = {
    "Docker-Content-Digest": _header("the blob's digest"),
    "Content-Length": _header("bytes in this answer"),
}
_SESSION_HEADERS = {
    "Location": _header("the session's URL"),
    "Docker-Upload-UUID": _header("the session's id"),
    "Upload-Offset": _header("bytes the session holds: the next chunk starts here"),
    "Range": _header("0-<last byte held> (OCI)"),
}
BLOB_READ_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The blob's bytes (none for HEAD)",
        "content": _BYTES,
        "headers": _BLOB_HEADERS,
    },
    206: {
        "description": "The requested range of the blob",
        "content": _BYTES,
        "headers": {**_BLOB_HEADERS, "Content-Range": _header("bytes <a>-<b>/<size>")},
    },
    **errors(400, 404, 416, 500, s400="Bad request: not a sha256:<64 hex> digest"),
}
_STORED = {"model": BlobOut, "headers": {"Location": _header("the blob's URL")}}
_UPLOAD_ERRORS = errors(
    400,
    404,
    413,
    416,
    507,
    s400="Bad request: a malformed digest or offset, bytes that do not hash to the "
    "digest, or a body cut short",
    s404="No such upload session",
    s413="Upload over the limit (FARM_MAX_BLOB_BYTES)",
    s416="The offset is not the session's (Upload-Offset says where to resume)",
)


def read_ahead(items: Iterable[T], depth: int) -> Generator[T, None, None]:
    """Iterate ``items`` on a thread of its own, at most ``depth`` items ahead.

    The store's hashing and file I/O release the GIL on large buffers, so receiving a
    body overlaps hashing and writing it, and reading and hashing a blob overlaps
    sending it.  Order, errors and the store's hold-back of a corrupted blob's last
    chunk are unchanged: items come out exactly as the source yields them.  Closing
    early stops the thread and closes the source before returning.
    """
    out: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        source = iter(items)
        try:
            for item in source:
                if stop.is_set():
                    break
                out.put(item)
            out.put(_DONE)
        except BaseException as exc:  # re-raised in the consumer, in order
            out.put(exc)
        finally:
            getattr(source, "close", lambda: None)()

    thread = threading.Thread(target=produce, name="farm-read-ahead", daemon=True)
    thread.start()
    item: object = None
    try:
        while (item := out.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield cast(T, item)
    finally:  # closed early: unblock the producer and wait for it
        stop.set()
        while not (item is _DONE or isinstance(item, BaseException)):
            item = out.get()
        thread.join()


def _store(request: Request) -> BlobStore:
    return cast(BlobStore, request.app.state.blobstore)


def _max_size(request: Request) -> int:
    settings = getattr(request.app.state, "settings", None)
    return int(getattr(settings, "max_blob_bytes", DEFAULT_MAX_BLOB_BYTES))


def http_error(exc: FarmError, headers: dict[str, str] | None = None) -> HTTPException:
    """The HTTPException for a FarmError: its status, its one-line message, its class."""
    return HTTPException(
        status_code=exc.http_status,
        detail=str(exc),
        headers={"X-Farm-Error": type(exc).__name__, **(headers or {})},
    )


def blob_response(store: BlobStore, digest: str, request: Request) -> Response:
    """The GET/HEAD response for a blob, honouring ``Range``; shared by other routers.

    Blocking (it may re-hash the blob): call it from a sync route.  A full read
    is verified first (cheaply, when the store has a fresh verification record)
    so a corrupted blob answers 500 instead of being served; HEAD does the same
    so that a client never skips re-uploading over a corrupted copy.
    """
    try:
        info = store.stat(digest)
        headers = {
            "ETag": f'"{digest}"',
            "Docker-Content-Digest": digest,
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        range_header = request.headers.get("range")
        if range_header is None or request.method == "HEAD":
            # Small blobs are re-hashed up front so corruption answers a clean 500.
            # Large full GETs skip that second pass: open_read hashes while
            # streaming and withholds the last chunk on a mismatch, so corrupted
            # bytes are still never served whole (the client sees a cut transfer).
            if request.method == "HEAD" or info.size <= PREVERIFY_MAX_BYTES:
                store.verify(digest, cached=True)
            start, end, status = 0, info.size - 1, 200
        else:
            bounds = parse_range(range_header, info.size)
            if bounds is None:
                raise HTTPException(
                    status_code=416,
                    detail=f"range {range_header!r} not satisfiable for {info.size} bytes",
                    headers={"Content-Range": f"bytes */{info.size}"},
                )
            start, end = bounds
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{info.size}"
        headers["Content-Length"] = str(end - start + 1)
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers)
        chunks = store.open_read(digest, start, end - start + 1)
    except FarmError as exc:
        raise http_error(exc) from None
    return StreamingResponse(read_ahead(chunks, GET_AHEAD), status_code=status, headers=headers)


async def _with_body(
    request: Request, consume: Callable[[Iterable[bytes]], T], batch_bytes: int = 1
) -> T:
    """Run ``consume`` in a worker thread over the request body, chunk by chunk."""
    stream = request.stream()
    token = anyio.lowlevel.current_token()  # read_ahead's thread is not anyio's
    # Batches grow from 512 KiB to ``batch_bytes``: a short or stalled body still
    # reaches the store soon, a long one pays few thread hops.
    want = min(batch_bytes, 512 * 1024)

    async def next_batch() -> list[bytes]:
        # uvicorn delivers pieces of 64-320 KiB, and a thread hop per piece costs about
        # as much as hashing it (bench/registry_bench.py): batch where progress may wait.
        # The pieces are handed over as they are: joining them would copy every byte.
        nonlocal want
        pieces: list[bytes] = []
        size = 0
        async for piece in stream:
            pieces.append(piece)
            size += len(piece)
            if size >= want:
                break
        want = min(want * 2, batch_bytes)
        return pieces

    def chunks() -> Iterator[bytes]:
        # Each batch is awaited on the event loop; the store's blocking writes
        # and hashing stay in threads.  Memory holds about one batch at a time.
        while batch := anyio.from_thread.run(next_batch, token=token):
            yield from (piece for piece in batch if piece)

    def run() -> T:
        if batch_bytes <= 1:  # a PATCH stays in step with what arrived
            return consume(chunks())
        # A PUT receives ahead while the store hashes and writes.  Closed here, on this
        # thread, even when the store stops early (413, mismatch): the receiving thread
        # may be waiting on the event loop, which must not be the one to wait for it.
        with contextlib.closing(read_ahead(chunks(), PUT_AHEAD)) as body:
            return consume(body)

    return await anyio.to_thread.run_sync(run)


def _session_headers(upload_id: str, offset: int) -> dict[str, str]:
    return {
        "Location": f"{router.prefix}/uploads/{upload_id}",
        "Docker-Upload-UUID": upload_id,
        "Range": f"0-{max(offset - 1, 0)}",  # OCI's inclusive range, "0-0" when empty
        "Upload-Offset": str(offset),
    }


def _requested_offset(request: Request) -> int | None:
    """The offset a PATCH/PUT says it writes at (``Upload-Offset`` or ``Content-Range``)."""
    if (value := request.headers.get("upload-offset")) is not None:
        if not value.strip().isdigit():
            raise upload_error(f"invalid Upload-Offset {value!r}", 400)
        return int(value)
    if (value := request.headers.get("content-range")) is not None:
        match = _CONTENT_RANGE_RE.fullmatch(value.strip())
        if match is None:
            raise upload_error(f"invalid Content-Range {value!r}: expected <start>-<end>", 400)
        return int(match[1])
    return None


async def _append(request: Request, store: BlobStore, upload_id: str) -> int:
    """Append the request body to a session, at the offset the client claims."""
    try:
        offset = _requested_offset(request)
        if offset is None:  # OCI "streamed" chunk: append wherever the session is
            offset = await anyio.to_thread.run_sync(store.upload_status, upload_id)
        limit = _max_size(request)
        return await _with_body(
            request, lambda chunks: store.upload_chunk(upload_id, offset, chunks, limit)
        )
    except FarmError as exc:
        extra: dict[str, str] = {}
        if exc.http_status == 416:  # tell the client where to resume
            current = await anyio.to_thread.run_sync(store.upload_status, upload_id)
            extra = _session_headers(upload_id, current)
        raise http_error(exc, extra) from None


@router.post(
    "/uploads",
    dependencies=[requires(Scope.WORKER)],
    status_code=202,
    response_class=Response,
    responses={202: {"description": "Session opened", "headers": _SESSION_HEADERS}},
)
def start_upload(request: Request) -> Response:
    """Open a resumable upload session."""
    upload_id = _store(request).start_upload()
    return Response(status_code=202, headers=_session_headers(upload_id, 0))


@router.patch(
    "/uploads/{upload_id}",
    dependencies=[requires(Scope.WORKER)],
    status_code=202,
    response_class=Response,
    responses={
        202: {"description": "Chunk appended", "headers": _SESSION_HEADERS},
        **_UPLOAD_ERRORS,
    },
)
async def patch_upload(upload_id: str, request: Request) -> Response:
    """Append a chunk; 416 with ``Upload-Offset`` when the offset is not the session's."""
    try:
        offset = await _append(request, _store(request), upload_id)
    except ClientDisconnect:  # bytes that did arrive are kept for a resume
        return Response(status_code=400)
    return Response(status_code=202, headers=_session_headers(upload_id, offset))


@router.get(
    "/uploads/{upload_id}",
    dependencies=[requires(Scope.WORKER)],
    status_code=204,
    response_class=Response,
    responses={
        204: {"description": "The session's offset", "headers": _SESSION_HEADERS},
        **errors(404, s404="No such upload session"),
    },
)
def upload_status(upload_id: str, request: Request) -> Response:
    """The session's current offset, in ``Upload-Offset`` and ``Range``."""
    try:
        offset = _store(request).upload_status(upload_id)
    except FarmError as exc:
        raise http_error(exc) from None
    return Response(status_code=204, headers=_session_headers(upload_id, offset))


@router.put(
    "/uploads/{upload_id}",
    dependencies=[requires(Scope.WORKER)],
    status_code=201,
    response_class=JSONResponse,
    responses={201: {"description": "Stored", **_STORED}, **_UPLOAD_ERRORS},
)
async def finish_upload(
    upload_id: str, request: Request, digest: str = Query(..., description="sha256:<hex>")
) -> Response:
    """Finish a session (appending an optional last chunk); 201 with the blob's Location."""
    store = _store(request)
    try:
        digest_hex(digest)
        await _append(request, store, upload_id)
        info = await anyio.to_thread.run_sync(
            lambda: store.finish_upload(upload_id, digest, _max_size(request))
        )
    except ClientDisconnect:
        return Response(status_code=400)
    except FarmError as exc:
        raise http_error(exc) from None
    return JSONResponse(
        {"digest": info.digest, "size": info.size},
        status_code=201,
        headers={"Location": f"{router.prefix}/{digest}", "Docker-Content-Digest": digest},
    )


@router.delete(
    "/uploads/{upload_id}",
    dependencies=[requires(Scope.WORKER)],
    status_code=204,
    response_class=Response,
    responses={
        204: {"description": "Session aborted"},
        **errors(404, s404="No such upload session"),
    },
)
def abort_upload(upload_id: str, request: Request) -> Response:
    """Abort a session and drop its bytes."""
    try:
        _store(request).abort_upload(upload_id)
    except FarmError as exc:
        raise http_error(exc) from None
    return Response(status_code=204)


@router.get(
    "/{digest}",
    dependencies=[requires(Scope.READ, Scope.WORKER)],
    response_class=Response,
    responses=BLOB_READ_RESPONSES,
)
def get_blob(digest: str, request: Request) -> Response:
    """Download a blob; ``Range: bytes=a-b`` gives 206."""
    return blob_response(_store(request), digest, request)


@router.head(
    "/{digest}",
    dependencies=[requires(Scope.READ, Scope.WORKER)],
    response_class=Response,
    responses=BLOB_READ_RESPONSES,
)
def head_blob(digest: str, request: Request) -> Response:
    """A blob's headers (size, digest) without its bytes; 404 if absent."""
    return blob_response(_store(request), digest, request)


@router.put(
    "/{digest}",
    dependencies=[requires(Scope.WORKER)],
    status_code=201,
    response_class=JSONResponse,
    responses={
        201: {"description": "Stored", **_STORED},
        200: {"description": "Already stored (the bytes were checked all the same)", **_STORED},
        **_UPLOAD_ERRORS,
    },
)
async def put_blob(digest: str, request: Request) -> Response:
    """Monolithic streaming upload; 201 when stored, 200 when it already existed."""
    store = _store(request)
    limit = _max_size(request)
    try:
        digest_hex(digest)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:  # refuse before reading a byte
            raise upload_error(f"blob of {declared} bytes over the limit of {limit}", 413)
        existed = await anyio.to_thread.run_sync(store.has, digest)
        info = await _with_body(
            request, lambda chunks: store.put_stream(chunks, digest, limit), PUT_BATCH_BYTES
        )
    except ClientDisconnect:  # nobody to answer; the store already dropped its temp file
        return Response(status_code=400)
    except FarmError as exc:
        raise http_error(exc) from None
    return JSONResponse(
        {"digest": info.digest, "size": info.size},
        status_code=200 if existed else 201,
        headers={"Location": f"{router.prefix}/{digest}", "Docker-Content-Digest": digest},
    )
