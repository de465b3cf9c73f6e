"""The commit status task: post one build status to its git host, in order, with retries.

A message is a :class:`~farm.githost.status.CommitStatus` (no token: the token is this
worker's ``FARM_GITHUB_STATUS_TOKEN`` / ``FARM_GITLAB_STATUS_TOKEN``). Delivery:

* **in order, newest wins.** Under a per-build Redis lock (the broker's Redis), the task
  reads the last delivered ``seq`` for the build and context; a status whose ``seq`` is
  not above it is dropped (a newer one already went), one the host already shows (same
  state and description) is recorded without posting. The lock is held across the POST,
  so two statuses of one build are never in flight at once.
* **retried.** A connection error, a timeout, 429 or 5xx is retried by Celery with
  exponential backoff (1 s doubling, 5 min at most, ``FARM_STATUS_MAX_RETRIES`` times);
  a busy lock likewise. Other 4xx answers (bad token, unknown project) are final: logged.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import httpx
import redis
from celery import shared_task
from celery.exceptions import MaxRetriesExceededError

from farm.githost.status import GITHUB, STATUS_TASK, CommitStatus, status_request
from farm.settings import Settings, get_settings

log = logging.getLogger("farm.worker")

_KEEP_SECONDS = 30 * 86400  # how long a build's last delivered seq is remembered
_BACKOFF_MAX = 300.0


class Transient(Exception):
    """Worth trying again later (the host or the lock was not available)."""


@dataclass
class Deliverer:
    """Posts statuses for one worker process (``redis`` None: no ordering, a non-Redis
    broker)."""

    settings: Settings
    redis: redis.Redis | None

    def token(self, host: str) -> str | None:
        """This worker's token for ``host``."""
        secret = (
            self.settings.github_status_token
            if host == GITHUB
            else self.settings.gitlab_status_token
        )
        return secret.get_secret_value() if secret is not None else None

    def deliver(self, status: CommitStatus) -> str:
        """Post ``status`` unless a newer one was delivered; what happened, in a word.

        Raises :class:`Transient` when it should be tried again.
        """
        token = self.token(status.host)
        if not token:
            log.error(
                "commit status for build %s dropped: no %s status token on this worker",
                status.build_id,
                status.host,
            )
            return "no-token"
        if self.redis is None:
            return self._post(status, token)
        key = "farm:commit-status:" + hashlib.sha256(status.key.encode()).hexdigest()[:40]
        lock = self.redis.lock(key + ":lock", timeout=self.settings.status_timeout * 3 + 5)
        try:
            locked = lock.acquire(blocking=True, blocking_timeout=2)
        except redis.RedisError as exc:
            raise Transient(f"redis: {exc}") from exc
        if not locked:
            raise Transient("another status of this build is being delivered")
        try:
            last = {_text(k): _text(v) for k, v in self.redis.hgetall(key).items()}
            if status.seq <= int(last.get("seq") or 0):
                return "superseded"
            if last.get("sig") == status.signature:
                self._record(key, status.seq, status.signature)
                return "unchanged"
            outcome = self._post(status, token)
            self._record(key, status.seq, status.signature if outcome == "delivered" else "")
            return outcome
        finally:
            # Expired (a POST slower than the lock's timeout): nothing to release.
            with contextlib.suppress(redis.RedisError):
                lock.release()

    def _record(self, key: str, seq: int, signature: str) -> None:
        assert self.redis is not None
        with self.redis.pipeline() as pipe:
            pipe.hset(key, mapping={"seq": seq, "sig": signature})
            pipe.expire(key, _KEEP_SECONDS)
            pipe.execute()

    def _post(self, status: CommitStatus, token: str) -> str:
        try:
            req = status_request(status, token)
        except ValueError as exc:
            log.error("commit status for build %s dropped: %s", status.build_id, exc)
            return "invalid"
        try:
            resp = httpx.post(
                req.url, json=req.body, headers=req.headers, timeout=self.settings.status_timeout
            )
        except httpx.HTTPError as exc:
            raise Transient(f"{type(exc).__name__}: {exc}") from exc
        if resp.status_code in (408, 429) or resp.status_code >= 500:
            raise Transient(f"{status.host} answered {resp.status_code}")
        if resp.status_code >= 400:
            log.error(
                "%s refused the status of build %s (%s): %d %s",
                status.host,
                status.build_id,
                status.state,
                resp.status_code,
                resp.text[:300],
            )
            return "refused"
        return "delivered"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


_deliverer: Deliverer | None = None


def deliverer() -> Deliverer:
    """The process's deliverer, built on first use (after fork, never at import)."""
    global _deliverer
    if _deliverer is None:
        settings = get_settings()
        client = None
        if settings.broker_url.startswith(("redis://", "rediss://")):
            client = redis.Redis.from_url(
                settings.broker_url, socket_timeout=5, socket_connect_timeout=5
            )
        _deliverer = Deliverer(settings, client)
    return _deliverer


def backoff(retries: int) -> float:
    """Seconds before retry number ``retries + 1``: 1, 2, 4, … up to five minutes."""
    return float(min(_BACKOFF_MAX, 2.0 ** min(retries, 16)))


@shared_task(name=STATUS_TASK, bind=True, acks_late=True, ignore_result=True)
def commit_status(self: Any, message: dict[str, Any]) -> str:
    """Post one commit status (see the module's docstring)."""
    try:
        status = CommitStatus.from_message(message)
    except ValueError as exc:
        log.error("%s", exc)
        return "invalid"
    worker = deliverer()
    try:
        outcome = worker.deliver(status)
    except Transient as exc:
        retries = int(self.request.retries or 0)
        log.warning(
            "commit status of build %s (%s, #%d) not delivered (%s); retry %d in %.0f s",
            status.build_id,
            status.state,
            status.seq,
            exc,
            retries + 1,
            backoff(retries),
        )
        try:
            raise self.retry(
                countdown=backoff(retries), max_retries=worker.settings.status_max_retries
            ) from exc
        except MaxRetriesExceededError:
            log.error(
                "commit status of build %s (%s) given up: %s", status.build_id, status.state, exc
            )
            return "gave-up"
    log.info(
        "commit status of build %s (%s, #%d): %s",
        status.build_id,
        status.state,
        status.seq,
        outcome,
    )
    return outcome
