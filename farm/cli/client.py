"""The CLI's HTTP client for the farm API: one readable error line, never a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx

from farm.errors import FarmError
from farm.http import HttpClient, HttpConfig, RetryPolicy
from farm.settings import get_settings

HINT = "is `farm up` running? (set --api or FARM_API_URL)"
# A command waits a little for an API that is restarting, not minutes.
CLI_RETRY = RetryPolicy(attempts=3, backoff=0.25, max_wait=1.0)


def api_base_url(url: str) -> str:
    """``--api`` as typed: ``host:port`` means ``http://host:port`` (as curl reads it)."""
    url = url.strip().rstrip("/")
    return url if "://" in url else f"http://{url}"


def _farm_answer(response: httpx.Response) -> None:
    """Refuse an HTML page (a proxy's login, another web app): the farm API never answers
    ``/api/v1`` with one, and its text would otherwise be printed as a log or an error."""
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "text/html":
        return
    response.close()
    url = response.request.url
    error = FarmError(
        f"{url.scheme}://{url.netloc.decode()} did not answer like a farm API "
        f"(HTTP {response.status_code} text/html); check --api or FARM_API_URL"
    )
    error.http_status = response.status_code  # a 200 page is not retried; a proxy's 502 is
    raise error


class ApiClient:
    """Calls ``/api/v1`` and turns failures into :class:`FarmError` with the server's words.

    The farm's one HTTP core (:mod:`farm.http`) with the CLI's hint on "cannot reach":
    idempotent requests are retried a few times, a POST only when it never left.
    """

    def __init__(self, base_url: str, timeout: float = 120.0, token: str | None = None) -> None:
        self.base_url = api_base_url(base_url)
        # FARM_TOKEN, else the admin token `farm up` keeps under this host's data dir.
        self.token = token if token is not None else get_settings().client_token("admin")
        self.http = HttpClient(
            HttpConfig(self.base_url, timeout=timeout, retry=CLI_RETRY, hint=HINT, token=self.token)
        )
        self.http.raw.event_hooks["response"].append(_farm_answer)

    def close(self) -> None:
        """Release the connection pool."""
        self.http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; an error answer or an unreachable API raises a FarmError."""
        return self.http.request(method, path, **kwargs)

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Decoded JSON body of a request."""
        return self.http.json(method, path, **kwargs)

    def stream(self, path: str) -> Iterator[bytes]:
        """Stream a download."""
        with self.http.stream("GET", path) as response:
            yield from response.iter_raw()  # blobs are never content-encoded
