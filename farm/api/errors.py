"""How the API answers errors, and how /openapi.json says so.

Every error answer is one JSON shape, :class:`ErrorBody` ``{detail, error, problems?}``:
``detail`` one readable line, ``error`` the :class:`~farm.errors.FarmError` class (or,
for the framework's own answers, a word for the status), ``problems`` the
``file:line:col`` diagnostics of a pipeline or plan.  The handlers here produce it for
FarmErrors, invalid requests (422, instead of FastAPI's list of dicts), the framework's
HTTPExceptions (404 unknown route, 405, the blob routes' errors), a busy or unreachable
database (503 with ``Retry-After``) and, as a last resort, any other exception (500,
logged with a bounded message: a request's body never lands in the log whole).

Routes declare the statuses particular to them with :func:`errors`; :func:`install_openapi`
adds what applies to every route of a kind (422 where there are parameters or a body,
413 where there is a JSON body, 503 everywhere) and removes FastAPI's
``HTTPValidationError``, so the document describes exactly what is answered.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from farm.domain.batches import ItemError
from farm.errors import DiagnosedError, FarmError

__all__ = [
    "RETRY_AFTER_SECONDS",
    "ErrorBody",
    "InternalErrors",
    "errors",
    "install_error_handlers",
    "install_openapi",
    "item_error",
]

log = logging.getLogger("farm.api")

RETRY_AFTER_SECONDS = 1  # what a 503 for a busy database tells clients to wait
_LOGGED_MESSAGE_CHARS = 500  # of an unexpected exception's message (it may quote input)
_DETAIL_CHARS = 2000  # of a framework error's detail

# What each status means on this API when a route does not say better.
_MEANINGS: dict[int, str] = {
    400: "Bad request: a malformed digest, upload offset or blob",
    401: "No valid API token: send 'Authorization: Bearer <token>'",
    403: "The token lacks the scope this needs, or the attempt is not this worker's",
    404: "Not found",
    409: "Conflict: the state change is no longer possible",
    413: "Request body over the limit (FARM_MAX_REQUEST_BYTES)",
    416: "Range or upload offset not satisfiable",
    422: "Invalid request: a parameter or the body does not validate, "
    "or the request asks for something impossible",
    426: "The worker speaks another protocol version: upgrade one side",
    500: "A stored blob no longer matches its digest (it is never served)",
    503: "A service the API needs (database, broker) is busy or down: retry later",
    507: "The blob store is out of space",
}
_ERROR_REF = "#/components/schemas/ErrorBody"
# The ``error`` word of the framework's own answers (no FarmError behind them).
_WORDS: dict[int, str] = {404: "NotFound", 409: "Conflict", 413: "RequestTooLarge"}


class ErrorBody(BaseModel):
    """Every error answer of the API."""

    detail: str = Field(description="what went wrong, one line")
    error: str = Field(description="the error's class in farm's error tree (e.g. NotFound)")
    problems: list[str] | None = Field(
        default=None,
        description="every problem found in a pipeline or rollout plan (file:line:col: ...)",
    )


def errors(*statuses: int, **meanings: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status answered with an :class:`ErrorBody`.

    A status's description is ``meanings["s404"]`` (``s`` + the status) when given, else
    the API-wide meaning of that status.
    """
    # Explicit content, not ``model``: FastAPI would document a model under the route's
    # own media type (text/plain on a text route) while errors are always JSON.
    return {
        status: _error_response(status, meanings.get(f"s{status}", _MEANINGS[status]))
        for status in statuses
    }


def _body(detail: str, error: str, problems: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"detail": detail, "error": error}
    if problems is not None:
        body["problems"] = problems
    return body


def _one_line(text: str, limit: int = _DETAIL_CHARS) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _loc_part(part: object) -> str:
    """One step of a validation error's location; a dict key (input) quoted and cut."""
    text = str(part)
    if text.isprintable() and len(text) <= 64:
        return text
    return ascii(text[:40] + ("…" if len(text) > 40 else ""))


def _is_busy(exc: OperationalError) -> bool:
    """A database that is busy or cannot be reached (not a bug in a statement)."""
    if exc.connection_invalidated:
        return True
    text = str(exc.orig).lower()
    if "locked" in text or "busy" in text:  # SQLite: "database is locked"
        return True
    # PostgreSQL (psycopg): every OperationalError is about the connection or the server.
    return type(exc.orig).__module__.startswith("psycopg")


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error with an :class:`ErrorBody` (see the module's docstring)."""

    @app.exception_handler(FarmError)
    async def _farm_error(_: Request, exc: FarmError) -> JSONResponse:
        problems = [str(d) for d in exc.diagnostics] if isinstance(exc, DiagnosedError) else None
        # RFC 6750: a 401 names the scheme the client must use.
        headers = {"WWW-Authenticate": 'Bearer realm="farm"'} if exc.http_status == 401 else None
        return JSONResponse(
            status_code=exc.http_status,
            content=_body(str(exc), type(exc).__name__, problems),
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # One line naming where; the rejected input is never echoed (it may be huge).
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(_loc_part(p) for p in first.get("loc", ()))
        detail = _one_line(f"{where}: {first.get('msg', 'invalid request')}")
        return JSONResponse(status_code=422, content=_body(detail, "ValidationError"))

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        word = headers.get("X-Farm-Error") or _WORDS.get(exc.status_code)
        if word is None:
            word = HTTPStatus(exc.status_code).phrase.replace(" ", "").replace("-", "")
        content = _body(_one_line(str(exc.detail)), word)
        return JSONResponse(status_code=exc.status_code, content=content, headers=headers)

    @app.exception_handler(OperationalError)
    async def _database(_: Request, exc: OperationalError) -> JSONResponse:
        if not _is_busy(exc):
            raise exc  # a broken statement is a bug: the last-resort handler answers 500
        log.warning("database busy or unreachable: %s", _one_line(str(exc.orig), 300))
        return JSONResponse(
            status_code=503,
            content=_body(
                "the database is busy or unreachable; retry shortly", "ServiceUnavailable"
            ),
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )


def item_error(exc: Exception) -> ItemError:
    """What one item of a batched request answers for ``exc``: what the handlers above
    (or the last resort) would have answered its own request, so one item's failure
    never fails its batch."""
    if isinstance(exc, FarmError):
        return ItemError(status=exc.http_status, error=type(exc).__name__, detail=str(exc))
    if isinstance(exc, OperationalError) and _is_busy(exc):
        log.warning("database busy or unreachable: %s", _one_line(str(exc.orig), 300))
        detail = "the database is busy or unreachable; retry shortly"
        return ItemError(status=503, error="ServiceUnavailable", detail=detail)
    incident = uuid.uuid4().hex[:12]
    log.error(
        "unexpected error %s in a batch item: %s: %s\n%s",
        incident,
        type(exc).__name__,
        _one_line(str(exc), _LOGGED_MESSAGE_CHARS),
        "".join(traceback.format_tb(exc.__traceback__)),
    )
    return ItemError(
        status=500, error="InternalError", detail=f"internal error (logged as {incident})"
    )


class InternalErrors:
    """Last resort (ASGI middleware): an unexpected exception answers a JSON 500.

    The traceback is logged with the exception's message cut to a few hundred
    characters, so input quoted in a message (a path, a body) never fills the log,
    and the client gets an id to quote instead of the traceback.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            incident = uuid.uuid4().hex[:12]
            frames = "".join(traceback.format_tb(exc.__traceback__))
            message = _one_line(str(exc), _LOGGED_MESSAGE_CHARS)
            log.error(
                "unexpected error %s in %s %s: %s: %s\n%s",
                incident,
                scope.get("method"),
                _one_line(str(scope.get("path", "")), 200),
                type(exc).__name__,
                message,
                frames,
            )
            if started:
                raise
            response = JSONResponse(
                status_code=500,
                content=_body(f"internal error (logged as {incident})", "InternalError"),
            )
            await response(scope, receive, send)


def install_openapi(app: FastAPI, public: frozenset[str] | None = None) -> None:
    """Make ``app.openapi()`` describe the errors as they are answered (see module doc).

    With auth on (``public`` given), every path but the public ones is documented as
    needing a bearer token (and answering 401 and 403); with auth off, none is.
    """

    generate = app.openapi  # FastAPI's own: builds the document once and keeps it

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            _document_errors(schema)
            if public is not None:
                _document_auth(schema, public)
        return generate()

    app.openapi = openapi  # type: ignore[method-assign]


_FASTAPI_422 = "#/components/schemas/HTTPValidationError"
_UNPARSABLE = "Bad request: the body cannot be read as JSON text (not UTF-8)"


def _error_response(status: int, description: str | None = None) -> dict[str, Any]:
    return {
        "description": description or _MEANINGS[status],
        "content": {"application/json": {"schema": {"$ref": _ERROR_REF}}},
    }


def _document_auth(schema: dict[str, Any], public: frozenset[str]) -> None:
    schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes["bearer"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "an API token (`farm token create`); its scopes decide what it may do",
    }
    for path, operations in schema.get("paths", {}).items():
        if path in public:
            continue
        for operation in operations.values():
            operation["security"] = [{"bearer": []}]
            responses = operation.setdefault("responses", {})
            responses.setdefault("401", _error_response(401))
            responses.setdefault("403", _error_response(403))


def _document_errors(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault(
        "ErrorBody", ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    )
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            documented = responses.get("422", {}).get("content", {}).get("application/json", {})
            if documented.get("schema", {}).get("$ref") == _FASTAPI_422:
                responses["422"] = _error_response(422)
            body = operation.get("requestBody", {}).get("content", {})
            if "application/json" in body:
                responses.setdefault("400", _error_response(400, _UNPARSABLE))
                responses.setdefault("413", _error_response(413))
            responses.setdefault("503", _error_response(503))
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
