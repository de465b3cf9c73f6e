"""How a worker talks to the coordinator: claims, logs, heartbeats and results over HTTP.

Claims and finish reports of concurrent slots share requests (``…/claims``,
``…/reports``; :mod:`farm.worker.batcher`); each call is still retried on its own, so a
failed batch costs each of its callers one try, as its own request would have.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from farm.domain.batches import MAX_BATCH
from farm.domain.messages import (
    Assignment,
    ClaimRequest,
    FinishReply,
    FinishReport,
    LiveReply,
    LiveRequest,
    LogReply,
    LogRequest,
    check_protocol,
)
from farm.errors import Conflict, FarmError, NotFound, from_wire
from farm.http import NO_RETRY, HttpClient, HttpConfig, RetryPolicy, decoded
from farm.worker.batcher import Batcher

_Reply = TypeVar("_Reply", bound=BaseModel)
PREFIX = "/api/v1/worker"
# A worker keeps trying for about 15 s: long enough for an API restart, short enough
# that a job is not held while its lease runs out.
RETRY = RetryPolicy(attempts=6, backoff=0.2, max_wait=5.0)
# What the report spool uses: one try per call, short; the spool itself is the retry
# loop (it keeps the reports on disk and tries again until the API takes them).
SPOOL_RETRY = NO_RETRY
SPOOL_TIMEOUT = 10.0
# Characters of log tail in one batch of finish reports (a request's body is capped at
# FARM_MAX_REQUEST_BYTES, 4 MiB by default; a tail is at most 256 Ki characters).
REPORTS_BUDGET = 512 * 1024

_Item = tuple[int, BaseModel]  # (job id, the per-job route's body)


class _NoBatches(Exception):
    """The API has no batch routes (an older one): send one request per call."""


class CoordinatorClient:
    """Thin client of the worker endpoints under ``/api/v1/worker`` (on farm.http)."""

    def __init__(
        self,
        base_url: str,
        timeout: float = 30.0,
        retry: RetryPolicy = RETRY,
        token: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token  # the worker's API token (worker scope)
        self._http = HttpClient(HttpConfig(self.base_url, timeout, retry=retry, token=token))
        self.batching = True  # False once the API turned out to have no batch routes
        self._claims: Batcher[_Item, Any] = Batcher(
            lambda items: self._send_batch("/claims", "claims", items), limit=MAX_BATCH
        )
        self._reports: Batcher[_Item, Any] = Batcher(
            lambda items: self._send_batch("/reports", "reports", items),
            limit=MAX_BATCH,
            budget=REPORTS_BUDGET,
            weight=_tail_size,
        )

    @classmethod
    def for_spool(cls, base_url: str, token: str | None = None) -> CoordinatorClient:
        """A client whose calls are tried once, for the report spool's own retry loop."""
        return cls(base_url, timeout=SPOOL_TIMEOUT, retry=SPOOL_RETRY, token=token)

    def close(self) -> None:
        """Release the connection pool."""
        self._http.close()

    def _call(self, path: str, body: BaseModel) -> Any:
        # Every worker endpoint is idempotent by attempt number: retrying is safe.
        return self._http.post_json(PREFIX + path, body.model_dump(mode="json"), idempotent=True)

    def _batched(
        self, batcher: Batcher[_Item, Any], path: str, job_id: int, body: BaseModel
    ) -> Any:
        """``body`` sent with whatever other slots send meanwhile (retried on its own);
        alone to ``path`` when the API has no batch routes."""
        if self.batching:
            try:
                return self._http.call(lambda: batcher.call((job_id, body)), idempotent=True)
            except _NoBatches:
                self.batching = False
        return self._call(path, body)

    def _send_batch(self, path: str, key: str, items: list[_Item]) -> list[Any]:
        """One request for ``items``; one answer (a reply's JSON, or its error) per item.

        A lone item goes to its per-job route, which every API has.
        """
        if len(items) == 1:
            job_id, body = items[0]
            single = f"/jobs/{job_id}/{'claim' if key == 'claims' else 'finish'}"
            try:
                return [decoded(self._http.check(self._post(single, body.model_dump(mode="json"))))]
            except FarmError as exc:
                return [exc]
        if key == "claims":
            entries = [{"job_id": j, **b.model_dump(mode="json")} for j, b in items]
        else:
            entries = [{"job_id": j, "report": b.model_dump(mode="json")} for j, b in items]
        response = self._post(path, {key: entries})
        if response.status_code == 404:  # the route itself: an item's 404 is in its result
            raise _NoBatches(path)
        body = decoded(self._http.check(response))
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, list) or len(results) != len(items):
            raise FarmError(f"the farm API answered {path} with a malformed batch")
        return [_result(r, path) for r in results]

    def _post(self, path: str, payload: Any) -> httpx.Response:
        """One try of a POST under ``/api/v1/worker`` (the caller checks and retries)."""
        return self._http.raw.post(PREFIX + path, json=payload)

    def claim(self, job_id: int, attempt: int, worker: str) -> Assignment | None:
        """The job's assignment, or None if this attempt is stale or taken."""
        path = f"/jobs/{job_id}/claim"
        try:
            request = ClaimRequest(attempt=attempt, worker=worker)
            data = self._batched(self._claims, path, job_id, request)
        except (NotFound, Conflict):
            return None
        # An API answering in another protocol took the claim: say so (the runner fails
        # the attempt with this message) rather than misread the assignment.
        protocol = data.get("protocol", 1) if isinstance(data, dict) else 1
        if isinstance(protocol, int):  # anything else is refused by _parse below
            check_protocol(protocol, sender="API", receiver="worker")
        return _parse(Assignment, data)

    def log(
        self,
        job_id: int,
        attempt: int,
        text: str,
        offset: int | None = None,
        job_token: str = "",
    ) -> LogReply:
        """Append output (also a heartbeat): may the attempt go on, has the log room?

        ``offset``: UTF-8 bytes of output sent before ``text`` (lets the API drop a resend);
        ``job_token``: the one the claim answered (the API refuses a log without it).
        """
        request = LogRequest(attempt=attempt, data=text, offset=offset, job_token=job_token)
        return _parse(LogReply, self._call(f"/jobs/{job_id}/log", request))

    def finish(self, job_id: int, report: FinishReport) -> FinishReply:
        """Report how the attempt ended; the answer is the job's status after it."""
        path = f"/jobs/{job_id}/finish"
        return _parse(FinishReply, self._batched(self._reports, path, job_id, report))

    def live(self, pairs: list[tuple[int, int]]) -> list[bool]:
        """Which (job, attempt) pairs still run (for the reaper)."""
        return _parse(LiveReply, self._call("/live", LiveRequest(attempts=pairs))).live


def _tail_size(item: _Item) -> int:
    log = getattr(item[1], "log", None)
    return len(log.data) if log is not None else 0


def _result(entry: Any, path: str) -> Any:
    """One item's answer of a batch: its reply's JSON, or the FarmError it stands for."""
    if not isinstance(entry, dict):
        return FarmError(f"the farm API answered {path} with a malformed result")
    failure = entry.get("failure")
    if isinstance(failure, dict):
        status = failure.get("status")
        body = json.dumps({"detail": failure.get("detail"), "error": failure.get("error")})
        code = status if isinstance(status, int) else 500
        return from_wire(code, None, body.encode(), f"POST {PREFIX}{path}")
    return entry.get("assignment", entry.get("reply"))


def _parse(model: type[_Reply], data: Any) -> _Reply:
    """A reply as its message model; an unreadable one is one FarmError line, not a trace."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise FarmError(
            f"the farm API answered a {model.__name__} this worker cannot read: "
            f"{where}: {first['msg']}"
        ) from exc
