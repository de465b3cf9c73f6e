"""How a worker talks to the coordinator: claims, logs, heartbeats and results over HTTP."""

from __future__ import annotations

from typing import Any

import httpx
from tenacity import (
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from farm.errors import FarmError, ServiceUnavailable


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code >= 500


_retry = retry(
    retry=retry_if_exception(_transient),
    stop=stop_after_attempt(6),
    wait=wait_exponential(multiplier=0.2, max=5),
    reraise=True,
)


class CoordinatorClient:
    """Thin HTTP client for the worker endpoints under ``/api/v1/worker``."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url + "/api/v1/worker", timeout=timeout)

    def close(self) -> None:
        """Release the connection pool."""
        self._http.close()

    @_retry
    def _post(self, path: str, payload: dict[str, Any]) -> httpx.Response:
        resp = self._http.post(path, json=payload)
        if resp.status_code >= 500:
            resp.raise_for_status()
        return resp

    def _call(self, path: str, payload: dict[str, Any]) -> httpx.Response:
        try:
            return self._post(path, payload)
        except httpx.TransportError as exc:
            raise ServiceUnavailable(
                f"cannot reach the farm API at {self.base_url}: {exc}"
            ) from exc
        except httpx.HTTPStatusError as exc:
            raise ServiceUnavailable(
                f"the farm API at {self.base_url} failed: {exc.response.status_code}"
            ) from exc

    def claim(self, job_id: int, attempt: int, worker: str) -> dict[str, Any] | None:
        """The job's assignment, or None if this attempt is stale or taken."""
        resp = self._call(f"/jobs/{job_id}/claim", {"attempt": attempt, "worker": worker})
        if resp.status_code in (404, 409):
            return None
        _check(resp)
        data: dict[str, Any] = resp.json()
        return data

    def log(self, job_id: int, attempt: int, text: str) -> tuple[bool, bool]:
        """Append output (also a heartbeat): (attempt may go on, log still has room)."""
        resp = self._call(f"/jobs/{job_id}/log", {"attempt": attempt, "data": text})
        _check(resp)
        body = resp.json()
        return bool(body.get("continue", False)), bool(body.get("accepted", False))

    def finish(self, job_id: int, attempt: int, result: dict[str, Any]) -> None:
        """Report how the attempt ended."""
        _check(self._call(f"/jobs/{job_id}/finish", {"attempt": attempt, **result}))

    def live(self, pairs: list[tuple[int, int]]) -> list[bool]:
        """Which (job, attempt) pairs still run (for the reaper)."""
        resp = self._call("/live", {"attempts": [list(p) for p in pairs]})
        _check(resp)
        return [bool(x) for x in resp.json()["live"]]


def _check(resp: httpx.Response) -> None:
    if resp.status_code >= 400:
        try:
            detail = resp.json().get("detail", resp.text)
        except ValueError:
            detail = resp.text
        raise FarmError(f"farm API refused: {detail}")
