"""The CLI's HTTP client for the farm API: one readable error line, never a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx

from farm.errors import Conflict, FarmError, NotFound, PipelineError, ServiceUnavailable


class ApiClient:
    """Calls ``/api/v1`` and turns failures into :class:`FarmError` with the server's words."""

    def __init__(self, base_url: str, timeout: float = 120.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; connection problems become ServiceUnavailable."""
        try:
            resp = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServiceUnavailable(
                f"cannot reach the farm API at {self.base_url} ({exc.__class__.__name__}): "
                "is `farm up` running? (set --api or FARM_API_URL)"
            ) from exc
        if resp.status_code >= 400:
            raise _error(resp)
        return resp

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Decoded JSON body of a request."""
        return self.request(method, path, **kwargs).json()

    def stream(self, path: str) -> Iterator[bytes]:
        """Stream a download."""
        try:
            with self._http.stream("GET", path) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise _error(resp)
                yield from resp.iter_raw()  # blobs are never content-encoded
        except httpx.TransportError as exc:
            raise ServiceUnavailable(f"cannot reach the farm API at {self.base_url}") from exc


def _error(resp: httpx.Response) -> FarmError:
    try:
        body = resp.json()
        detail = body.get("detail", resp.text)
        problems = body.get("problems") or []
    except ValueError:
        detail, problems = resp.text.strip() or resp.reason_phrase, []
    if not isinstance(detail, str):
        detail = str(detail)
    if problems:
        err: FarmError = PipelineError(detail)
        err.args = ("\n".join(problems),)
        return err
    if resp.status_code == 404:
        return NotFound(detail)
    if resp.status_code == 409:
        return Conflict(detail)
    return FarmError(detail)
