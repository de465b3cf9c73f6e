"""The one error tree of farm.

Every error a user can cause or meet is a :class:`FarmError`; the API maps the
tree to HTTP status codes at its edge and the CLI prints ``str(error)`` as one
line. Nothing else is raised on purpose.

::

    FarmError
    ├── ConfigError              settings that cannot work (bad URL, missing binary)
    ├── DiagnosedError           a file that cannot be used (carries file:line:col diagnostics)
    │   ├── PipelineError        a pipeline file that cannot be run
    │   │   └── PipelineFilteredOut  workflow:rules decided no build is created
    │   └── PlanError            a rollout plan (.farm/rollout.yml) that cannot be used
    ├── SourceError              repository, ref or commit that cannot be read
    ├── NotFound                 a build, job, artifact or release that does not exist
    ├── Conflict                 a state change that is no longer possible
    ├── InvalidRequest           well-formed, but asks for the impossible (release a red build)
    ├── RegistryError            blob storage problems
    │   ├── DigestMismatch       bytes whose sha256 is not the one promised
    │   ├── BlobNotFound         no blob with that digest
    │   ├── CorruptBlob          stored bytes no longer match their digest
    │   ├── UploadError          bad offset, size over the limit, unknown session
    │   ├── UnsafeArchive        an archive member escaping its root
    │   └── SignatureError       a provenance envelope whose signature does not verify
    ├── ExecutorError            the container runtime failed (not the job)
    │   └── ImageNotFound        the job's image is not available locally
    ├── ProtocolMismatch         a worker and an API that speak different protocols
    └── ServiceUnavailable       Redis, Docker or the API does not answer
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass


class FarmError(Exception):
    """Base of every error farm raises on purpose; ``str()`` is one readable line."""

    http_status = 500


class ConfigError(FarmError):
    """Settings or host setup that cannot work."""

    http_status = 500


@dataclass(frozen=True)
class Diagnostic:
    """One problem in a pipeline file, located as ``file:line:col``."""

    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class DiagnosedError(FarmError):
    """A file that cannot be used, with every problem found in it (``file:line:col``)."""

    http_status = 422
    default_file = "<file>"

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic | str) -> None:
        if isinstance(diagnostics, str):
            diagnostics = [Diagnostic(self.default_file, 0, 0, diagnostics)]
        elif isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics: list[Diagnostic] = diagnostics
        first = str(diagnostics[0]) if diagnostics else f"invalid {self.default_file}"
        more = f" (and {len(diagnostics) - 1} more)" if len(diagnostics) > 1 else ""
        super().__init__(first + more)


class PipelineError(DiagnosedError):
    """A pipeline file that cannot be run; holds every problem found."""

    default_file = "<pipeline>"


class PipelineFilteredOut(PipelineError):
    """``workflow: rules`` decided that no build is created for this commit."""

    http_status = 422


class SourceError(FarmError):
    """A repository, ref or commit that cannot be read."""

    http_status = 422


class NotFound(FarmError):
    """Something asked for by id or digest does not exist."""

    http_status = 404


class Conflict(FarmError):
    """A state change that is no longer possible (e.g. cancel a finished build)."""

    http_status = 409


class InvalidRequest(FarmError):
    """A well-formed request that asks for something impossible (e.g. release a red build)."""

    http_status = 422


class RegistryError(FarmError):
    """Blob storage problems."""

    http_status = 500


class DigestMismatch(RegistryError):
    """Bytes whose sha256 is not the digest that was promised."""

    http_status = 400


class BlobNotFound(RegistryError, NotFound):
    """No blob with that digest."""

    http_status = 404


class CorruptBlob(RegistryError):
    """Stored bytes no longer hash to their digest; never served."""

    http_status = 500


class UploadError(RegistryError):
    """A bad upload: wrong offset, over the size limit, unknown session."""

    http_status = 400


class UnsafeArchive(RegistryError):
    """An archive member that would escape its root (``..``, absolute, symlink out)."""

    http_status = 400


class SignatureError(RegistryError):
    """A signed statement whose signature, key or subjects do not check out."""

    http_status = 400


class ExecutorError(FarmError):
    """The container runtime failed, not the job itself."""

    http_status = 500


class ImageNotFound(ExecutorError):
    """The job's image does not exist locally and cannot be pulled."""

    http_status = 422


class ServiceUnavailable(FarmError):
    """A service farm depends on (Redis, Docker, the API) does not answer."""

    http_status = 503


class PlanError(DiagnosedError):
    """A rollout plan (``.farm/rollout.yml``) that cannot be used; holds every problem found."""

    default_file = "<plan>"


class Unauthorized(FarmError):
    """No valid credentials: a missing, unknown, expired or revoked token (401)."""

    http_status = 401


class Forbidden(FarmError):
    """Valid credentials that do not allow this (403): a scope it lacks, another's attempt."""

    http_status = 403


class ProtocolMismatch(FarmError):
    """A worker and an API that speak different versions of the worker protocol.

    426 Upgrade Required: the request is well formed but one side must be upgraded.
    Not 409, which tells a worker its attempt is stale or taken (it then drops the job
    quietly); a mismatch must fail loudly instead.
    """

    http_status = 426


# --- errors that crossed the wire ------------------------------------------------------
# farm servers answer an error as JSON ``{"detail": ..., "error": <class name>}`` (plus
# ``problems`` for a PipelineError); the blob routes and the data plane also name the
# class in an ``X-Farm-Error`` header.  The clients (farm/http.py for the API, the blob
# data plane's raw-socket client) turn such an answer back into a FarmError here, so the
# name -> class mapping exists once.

_BY_STATUS: dict[int, type[FarmError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: InvalidRequest,
    503: ServiceUnavailable,
}
_DIAGNOSTIC = re.compile(r"(?P<file>.*?):(?P<line>\d+):(?P<col>\d+): (?P<message>.*)", re.S)


def error_class(name: str | None) -> type[FarmError] | None:
    """The class of this tree named ``name`` (a server's ``X-Farm-Error`` / ``error``), or None."""
    found = globals().get(name) if name else None
    return found if isinstance(found, type) and issubclass(found, FarmError) else None


def from_wire(status: int, name: str | None, body: bytes, where: str = "") -> FarmError:
    """The FarmError an HTTP error answer stands for, from its status, error name and body.

    The class is the one ``name`` (or else the body's ``error``) names in this tree; an
    unknown or missing name falls back on the status: 404 NotFound, 409 Conflict, 422
    InvalidRequest (PipelineError when the body lists ``problems``), 503
    ServiceUnavailable, anything else FarmError.  The message is the server's ``detail``
    (a list, as FastAPI answers invalid requests, is joined into one line); ``problems``
    become the message one per line (and the error's diagnostics); without either, the
    start of a non-JSON body or ``HTTP <status> from <where>``.  The error's
    ``http_status`` is the status answered (finer than its class's: 416, 507, ...).
    """
    fields = _json_fields(body)
    raw_problems = fields.get("problems")
    problems = [str(p) for p in raw_problems] if isinstance(raw_problems, list) else []
    named = fields.get("error")
    cls = error_class(name or (named if isinstance(named, str) else None))
    if cls is None:
        cls = PipelineError if problems else _BY_STATUS.get(status, FarmError)
    detail = _detail_text(fields.get("detail")) or ("" if fields else _plain_text(body))
    fallback = f"HTTP {status} from {where}" if where else f"HTTP {status}"
    message = "\n".join(problems) or detail or fallback
    error = cls(message)
    error.args = (message,)  # a DiagnosedError would prefix "<pipeline>:0:0: "
    if problems and isinstance(error, DiagnosedError):
        error.diagnostics = [_diagnostic(p) for p in problems]
    error.http_status = status
    return error


def _json_fields(body: bytes) -> dict[str, object]:
    try:
        value = json.loads(body) if body else None
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _detail_text(detail: object) -> str:
    """``detail`` as one line: a string as is; FastAPI's list of ``{loc, msg}`` joined."""
    if detail is None:
        return ""
    if isinstance(detail, str):
        return detail.strip()
    if isinstance(detail, list):
        return "; ".join(_detail_item(item) for item in detail)
    return json.dumps(detail)


def _detail_item(item: object) -> str:
    if isinstance(item, dict) and "msg" in item:
        loc = item.get("loc")
        where = ".".join(str(p) for p in loc) if isinstance(loc, list | tuple) else ""
        return f"{where}: {item['msg']}" if where else str(item["msg"])
    return str(item)


def _plain_text(body: bytes) -> str:
    """The first line of a non-JSON body (a proxy's answer), unless it is markup."""
    text = body[:1000].decode("utf-8", "replace").strip()
    first = text.splitlines()[0][:200] if text else ""
    return "" if first.startswith("<") else first


def _diagnostic(problem: str) -> Diagnostic:
    match = _DIAGNOSTIC.fullmatch(problem)
    if match is None:
        return Diagnostic("<pipeline>", 0, 0, problem)
    return Diagnostic(match["file"], int(match["line"]), int(match["col"]), match["message"])


class RequestTooLarge(FarmError):
    """A request body over the API's limit (``FARM_MAX_REQUEST_BYTES`` and kin), refused
    before it was read.  (A FarmError directly: ``FarmError`` ├── ``RequestTooLarge``.)"""

    http_status = 413


_BY_STATUS[413] = RequestTooLarge
