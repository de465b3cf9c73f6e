"""How a worker talks to the coordinator: claims, logs, heartbeats and results over HTTP."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

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
from farm.errors import Conflict, FarmError, NotFound
from farm.http import NO_RETRY, HttpClient, HttpConfig, RetryPolicy

_Reply = TypeVar("_Reply", bound=BaseModel)
PREFIX = "/api/v1/worker"
# A worker keeps trying for about 15 s: long enough for an API restart, short enough
# that a job is not held while its lease runs out.
RETRY = RetryPolicy(attempts=6, backoff=0.2, max_wait=5.0)
# What the report spool uses: one try per call, short; the spool itself is the retry
# loop (it keeps the reports on disk and tries again until the API takes them).
SPOOL_RETRY = NO_RETRY
SPOOL_TIMEOUT = 10.0


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

    def claim(self, job_id: int, attempt: int, worker: str) -> Assignment | None:
        """The job's assignment, or None if this attempt is stale or taken."""
        try:
            data = self._call(f"/jobs/{job_id}/claim", ClaimRequest(attempt=attempt, worker=worker))
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
        return _parse(FinishReply, self._call(f"/jobs/{job_id}/finish", report))

    def live(self, pairs: list[tuple[int, int]]) -> list[bool]:
        """Which (job, attempt) pairs still run (for the reaper)."""
        return _parse(LiveReply, self._call("/live", LiveRequest(attempts=pairs))).live


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
