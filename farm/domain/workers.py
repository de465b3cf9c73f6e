"""Workers as the API knows them: their heartbeats, and what "stuck" means.

A worker sends a :class:`WorkerHeartbeat` every ``FARM_WORKER_HEARTBEAT`` seconds
(``POST /api/v1/worker/heartbeat``); one seen within ``FARM_WORKER_TIMEOUT`` is live.
A pending job whose queue no live worker consumes is *stuck* (GitLab's word) once it
waited ``FARM_STUCK_AFTER`` seconds: :func:`stuck_reason` is what the job and its build
show until such a worker appears.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from farm.domain.state import DEFAULT_QUEUE

_TAGGED = "farm.tags."


class WorkerHeartbeat(BaseModel):
    """What a worker reports about itself every few seconds."""

    name: str = Field(min_length=1, max_length=255)
    host: str = Field(default="", max_length=255)
    tags: list[str] = Field(default_factory=list, max_length=64)
    queues: list[str] = Field(default_factory=list, max_length=4096)
    # Strict: JSON true/false are not numbers of slots or job ids.
    slots: int = Field(default=1, ge=0, le=100_000, strict=True)
    running: list[Annotated[int, Field(ge=1, le=2**31 - 1, strict=True)]] = Field(
        default_factory=list, max_length=100_000
    )  # job ids


class WorkerInfo(WorkerHeartbeat):
    """A worker's last heartbeat, as ``GET /api/v1/workers`` lists it."""

    started_at: datetime
    last_seen: datetime
    alive: bool = True


def queue_tags(queue: str) -> list[str] | None:
    """The tags of a job queue (``[]`` for untagged jobs), None for other queues."""
    if queue == DEFAULT_QUEUE:
        return []
    if queue.startswith(_TAGGED):
        return [t for t in queue[len(_TAGGED) :].split("+") if t]
    return None


def stuck_reason(queue: str) -> str:
    """What a job waiting on ``queue`` with no live worker serving it shows."""
    tags = queue_tags(queue)
    if tags is None:
        return f"stuck: no worker serves queue {queue}"
    if not tags:
        return "stuck: no worker serves untagged jobs"
    return f"stuck: no worker serves tags [{', '.join(tags)}]"
