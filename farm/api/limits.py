"""Bounds on what the network may send: ids, strings, request bodies.

Everything a request carries ends up in a query, a file name, a git command or a log
line, so it is bounded before a route sees it, and refused with a 422 that names the
field (not a 500 from deep inside, and never echoed back whole):

* **ids** (path, query and body) are database integers: ``1 <= id <= 2**31 - 1``
  (:data:`MAX_ID`; the id columns are INTEGER, 32 bits on PostgreSQL, as the worker
  protocol's ids are).  Out of range is a 422, like any other value that does not
  validate; an id in range that names nothing is a 404.
* **strings** have a maximum length and carry no control characters (NUL, newline, ESC,
  DEL, ...) nor lone surrogates; free text (a variable's value) may hold tab and newline.
* **request bodies** are capped by :class:`BodyLimit` before they are read into memory:
  ``FARM_MAX_REQUEST_BYTES`` for JSON bodies, ``FARM_MAX_WORKER_REQUEST_BYTES`` for the
  worker routes (a log chunk, a finish report listing an archive's files).  The blob
  routes stream to the store and are capped by ``FARM_MAX_BLOB_BYTES`` there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Path
from fastapi.responses import JSONResponse
from pydantic import Field, GetCoreSchemaHandler, GetJsonSchemaHandler, StringConstraints
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "MAX_ID",
    "MAX_NAME",
    "BodyLimit",
    "BuildIdPath",
    "Id",
    "JobIdPath",
    "Line",
    "NoControl",
    "RolloutIdPath",
    "Version",
]

MAX_ID = 2**31 - 1  # the id columns are INTEGER: 32 bits on PostgreSQL
MAX_NAME = 255  # names, refs, projects: the width of their columns

# Control characters a name or line never contains (C0, DEL), and lone surrogates
# (they cannot even be encoded to UTF-8 for the database).
_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
_CONTROL_BUT_WHITESPACE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_NAMES = {
    "\x00": "NUL",
    "\t": "tab",
    "\n": "newline",
    "\r": "carriage return",
    "\x1b": "ESC",
    "\x7f": "DEL",
}


@dataclass(frozen=True)
class NoControl:
    """``Annotated`` marker: refuse control characters (``text``: all but tab/CR/LF).

    Validation says which character and where; the JSON schema gets the matching
    ``pattern`` so clients (and schemathesis) know the rule.
    """

    text: bool = False
    also: str = ""  # more characters refused (printable ones, e.g. "=" in a variable's name)

    @property
    def pattern(self) -> str:
        """The rule as a JSON-schema (ECMA 262) pattern."""
        more = re.escape(self.also)
        if self.text:
            return rf"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f{more}]*$"
        return rf"^[^\x00-\x1f\x7f{more}]*$"

    def check(self, value: str) -> str:
        """``value``, if it holds no refused character; ValueError naming it otherwise."""
        for char in self.also:
            if char in value:
                raise ValueError(f"{char!r} at position {value.index(char)} is not allowed")
        found = (_CONTROL_BUT_WHITESPACE if self.text else _CONTROL).search(value)
        if found is None:
            return value
        char = found.group()
        name = _NAMES.get(char) or (
            "a lone surrogate" if "\ud800" <= char <= "\udfff" else f"U+{ord(char):04X}"
        )
        raise ValueError(f"control character {name} at position {found.start()} is not allowed")

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        value = handler(schema)
        value["pattern"] = self.pattern
        return value


Line = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME), NoControl()]
"""A name, ref or project from the network: 1..255 characters, one line."""
Version = Annotated[str, StringConstraints(min_length=1, max_length=128), NoControl()]
"""A release version: 1..128 characters, one line."""

BuildIdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="a build's id")]
JobIdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="a job's id")]
RolloutIdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="a rollout's id")]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
"""An id in a body or a query."""


# --- request bodies --------------------------------------------------------------------


class _TooLarge(HTTPException):
    def __init__(self, limit: int, setting: str) -> None:
        super().__init__(
            status_code=413,
            detail=f"request body over the limit of {limit} bytes (raise {setting})",
            headers={"X-Farm-Error": "RequestTooLarge"},
        )


class BodyLimit:
    """ASGI middleware: cap request bodies before they are read into memory.

    A declared ``Content-Length`` over the limit is answered 413 at once, unread; a
    body without one (chunked) is counted as it arrives and refused as soon as it
    passes the limit (the 413 comes from the HTTPException raised while the route
    reads it).  Paths under ``exempt`` prefixes (the streaming blob routes, which
    have their own cap) pass untouched; paths under ``worker`` prefixes get
    ``worker_limit``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: int,
        worker_limit: int,
        worker: tuple[str, ...] = (),
        exempt: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.limit = limit
        self.worker_limit = worker_limit
        self.worker = worker
        self.exempt = exempt

    def _limit_of(self, path: str) -> tuple[int, str] | None:
        if path.startswith(self.exempt):
            return None
        if path.startswith(self.worker):
            return self.worker_limit, "FARM_MAX_WORKER_REQUEST_BYTES"
        return self.limit, "FARM_MAX_REQUEST_BYTES"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self._limit_of(scope.get("path", "")) if scope["type"] == "http" else None
        if found is None:
            await self.app(scope, receive, send)
            return
        limit, setting = found
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            too_large = _TooLarge(limit, setting)
            response = JSONResponse(
                status_code=413,
                content={"detail": too_large.detail, "error": "RequestTooLarge"},
                headers={**(too_large.headers or {}), "Connection": "close"},
            )
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge(limit, setting)
            return message

        await self.app(scope, counted, send)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
