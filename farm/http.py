"""The one HTTP client core of farm: httpx + tenacity, one retry rule, one error mapping.

Every client of the farm API (the CLI, the worker's coordinator and cache-index calls,
the registry client) is an :class:`HttpClient` configured by an :class:`HttpConfig`:

* **One retry rule** (:func:`should_retry`): a request that never reached the server
  (connection refused, connect timeout) is always tried again; any other transport
  failure and a retryable 5xx answer (:func:`worth_retrying`: not 501, not 507
  Insufficient Storage, not a ``CorruptBlob``) are tried again only when the request
  is *idempotent*.  GET, HEAD, OPTIONS, PUT and DELETE are; POST and PATCH are not
  unless the caller says so (``idempotent=True``).  Every worker endpoint
  (``/api/v1/worker/...``: claim, log, finish, live, caches) is idempotent by attempt
  number, so the worker's POSTs say so.  Attempts are bounded and spaced by an
  exponential backoff (:class:`RetryPolicy`).
* **One error mapping** (:func:`error_from_response`): a 4xx/5xx answer becomes the
  :class:`~farm.errors.FarmError` the server named (``X-Farm-Error`` header or the body's
  ``error``), else one chosen by status, with the server's ``detail`` as its message
  (``farm.errors.from_wire``, shared with the blob data plane's raw-socket client).
  A server that cannot be reached, once the attempts are spent, is
  ``ServiceUnavailable("cannot reach the farm API at URL (ConnectError): ...")``.

::

    with HttpClient(HttpConfig("http://127.0.0.1:8700", token=token)) as api:
        build = api.json("GET", "/api/v1/builds/7")
        api.post_json("/api/v1/worker/jobs/7/finish", {"attempt": 1}, idempotent=True)
        with api.stream("GET", "/api/v1/artifacts/sha256:...") as response:
            for chunk in response.iter_raw():
                ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from farm import __version__
from farm.errors import ConfigError, CorruptBlob, FarmError, ServiceUnavailable, from_wire

__all__ = [
    "IDEMPOTENT_METHODS",
    "NO_RETRY",
    "USER_AGENT",
    "HttpClient",
    "HttpConfig",
    "RetryPolicy",
    "error_from_response",
    "should_retry",
    "worth_retrying",
]

T = TypeVar("T")
USER_AGENT = f"farm/{__version__}"
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# 5xx answers that another attempt would only meet again.
NOT_RETRIED_STATUSES = frozenset({501, 507})
# Transport failures before the request left: retrying them is always safe.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a request is tried.

    ``attempts`` in all (1: never retried); the n-th retry waits
    ``backoff * 2**(n-1)`` seconds, at most ``max_wait``.
    """

    attempts: int = 5
    backoff: float = 0.2
    max_wait: float = 5.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.backoff < 0 or self.max_wait < 0:
            raise ConfigError(f"invalid retry policy {self}")


NO_RETRY = RetryPolicy(attempts=1)


@dataclass(frozen=True)
class HttpConfig:
    """Where and how a client talks to the farm API.

    ``base_url``: the API's root (``http://host:8700``); paths are absolute under it.
    ``token``: sent as ``Authorization: Bearer <token>``.  ``hint``: appended to the
    "cannot reach" message (the CLI's "is `farm up` running? ...").
    """

    base_url: str
    timeout: float = 30.0
    token: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    user_agent: str = USER_AGENT
    hint: str = ""

    def headers(self) -> dict[str, str]:
        """The headers every request carries."""
        headers = {"User-Agent": self.user_agent}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers


def worth_retrying(error: FarmError) -> bool:
    """Whether an error answer is a server-side failure another attempt may not meet.

    5xx, except 501 (never implemented), 507 (a full disk stays full) and a
    ``CorruptBlob`` (the stored bytes stay bad).
    """
    status = error.http_status
    if isinstance(error, CorruptBlob) or status in NOT_RETRIED_STATUSES:
        return False
    return 500 <= status <= 599


def should_retry(
    exc: BaseException, *, idempotent: bool, transient: tuple[type[BaseException], ...] = ()
) -> bool:
    """The one retry rule (see the module docstring).

    ``transient``: more exception types that mean "the transfer broke" (the blob data
    plane's raw-socket errors); they count as transport failures.
    """
    if isinstance(exc, httpx.UnsupportedProtocol):
        return False  # a bad URL stays bad
    if isinstance(exc, _NOT_SENT):
        return True
    if isinstance(exc, (httpx.TransportError, *transient)):
        return idempotent
    if isinstance(exc, FarmError):
        return idempotent and worth_retrying(exc)
    return False


def error_from_response(response: httpx.Response) -> FarmError:
    """The FarmError a 4xx/5xx answer stands for, with the server's one-line message.

    A streamed response must have been read (:meth:`HttpClient.check` does it).
    """
    try:
        body = response.content
    except httpx.ResponseNotRead:
        body = b""
    try:
        where = f"{response.request.method} {response.request.url}"
    except RuntimeError:  # a response built by hand has no request
        where = ""
    return from_wire(response.status_code, response.headers.get("x-farm-error"), body, where)


class HttpClient:
    """One ``httpx.Client`` to the farm API with farm's retry rule and error mapping.

    Thread-safe (httpx's pool is).  ``request``, ``json``, ``post_json`` and ``stream``
    retry and map errors themselves; a caller composing its own attempt (several
    requests, a resumable transfer) runs it with :meth:`call` on :attr:`raw` and
    checks each answer with :meth:`check`.
    """

    def __init__(self, config: HttpConfig) -> None:
        self.config = config
        self.base_url = config.base_url.rstrip("/")
        self.raw = httpx.Client(
            base_url=self.base_url, timeout=config.timeout, headers=config.headers()
        )

    def close(self) -> None:
        """Release the connection pool."""
        self.raw.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the core ----------------------------------------------------------------------

    def call(
        self,
        attempt: Callable[[], T],
        *,
        idempotent: bool = True,
        transient: tuple[type[BaseException], ...] = (),
    ) -> T:
        """Run ``attempt`` under the retry rule; map what is left of its failures.

        ``attempt`` may raise ``httpx.TransportError`` (or a ``transient`` type), which
        after the last attempt becomes ServiceUnavailable, or a FarmError (from
        :meth:`check`), retried when :func:`worth_retrying` and re-raised as is.
        Anything else propagates at once.
        """
        policy = self.config.retry
        retrying = Retrying(
            stop=stop_after_attempt(policy.attempts),
            wait=wait_exponential(multiplier=policy.backoff, max=policy.max_wait),
            retry=retry_if_exception(
                lambda exc: should_retry(exc, idempotent=idempotent, transient=transient)
            ),
            reraise=True,
        )
        broken: tuple[type[BaseException], ...] = (httpx.TransportError, *transient)
        try:
            return retrying(attempt)
        except broken as exc:
            raise self.unreachable(exc) from exc

    def check(self, response: httpx.Response) -> httpx.Response:
        """``response`` if it is not an error; else raise the FarmError it stands for."""
        if not response.is_error:
            return response
        if not response.is_stream_consumed:
            response.read()
        raise error_from_response(response)

    def unreachable(self, exc: BaseException) -> ServiceUnavailable:
        """The one-line ServiceUnavailable for a transport failure."""
        words = [" ".join(str(exc).split()), self.config.hint]
        reason = "; ".join(w for w in words if w)
        message = f"cannot reach the farm API at {self.base_url} ({type(exc).__name__})"
        return ServiceUnavailable(f"{message}: {reason}" if reason else message)

    # --- requests ----------------------------------------------------------------------

    def request(
        self, method: str, path: str, *, idempotent: bool | None = None, **kwargs: Any
    ) -> httpx.Response:
        """One request (retried per the rule); an error answer raises its FarmError.

        ``kwargs`` go to ``httpx.Client.request`` (``json``, ``params``, ``headers``, ...);
        a body must be replayable (bytes, not a one-shot iterator) to be retried.
        ``idempotent`` defaults by method (:data:`IDEMPOTENT_METHODS`).
        """
        return self.call(
            lambda: self.check(self.raw.request(method, path, **kwargs)),
            idempotent=_idempotent(method, idempotent),
        )

    def json(self, method: str, path: str, *, idempotent: bool | None = None, **kwargs: Any) -> Any:
        """The decoded JSON body of :meth:`request`."""
        return decoded(self.request(method, path, idempotent=idempotent, **kwargs))

    def post_json(self, path: str, payload: Any, *, idempotent: bool = False) -> Any:
        """POST ``payload`` as JSON and decode the answer; ``idempotent=True`` retries it.

        Every worker endpoint is idempotent by attempt number: pass ``idempotent=True``.
        """
        return self.json("POST", path, json=payload, idempotent=idempotent)

    @contextmanager
    def stream(
        self, method: str, path: str, *, idempotent: bool | None = None, **kwargs: Any
    ) -> Iterator[httpx.Response]:
        """A streamed response whose status was checked (and retried) before its body.

        Inside the ``with`` block read it with ``iter_raw``/``iter_bytes``; a connection
        that breaks while doing so raises ServiceUnavailable (not retried: resuming is
        the caller's business, as the registry client's ``Range`` downloads do).
        """

        def attempt() -> tuple[ExitStack, httpx.Response]:
            stack = ExitStack()
            try:
                response = stack.enter_context(self.raw.stream(method, path, **kwargs))
                self.check(response)
            except BaseException:
                stack.close()
                raise
            return stack, response

        stack, response = self.call(attempt, idempotent=_idempotent(method, idempotent))
        with stack:
            try:
                yield response
            except httpx.TransportError as exc:
                raise self.unreachable(exc) from exc


def decoded(response: httpx.Response) -> Any:
    """The JSON body of an answer; one FarmError line when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        raise FarmError(
            f"{response.request.method} {response.url}: the farm API answered "
            f"{response.status_code} with a body that is not JSON"
        ) from None


def _idempotent(method: str, said: bool | None) -> bool:
    return said if said is not None else method.upper() in IDEMPOTENT_METHODS
