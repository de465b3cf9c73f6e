"""``/api/v1/hooks``: GitHub and GitLab webhooks that build what was pushed.

Each endpoint is off (404) until the farm has its secret: ``FARM_GITHUB_WEBHOOK_SECRET``
(checked as the ``X-Hub-Signature-256`` HMAC-SHA256 of the raw body) or
``FARM_GITLAB_WEBHOOK_TOKEN`` (the ``X-Gitlab-Token`` header); both compared in constant
time, before the body is even parsed.  A missing or wrong signature is a 401 and
creates nothing.  The raw body is the one the app's body limit already capped.

What is built is the payload's clone URL (never a path on the coordinator's disk: only
the ``FARM_HOOK_ALLOWED_URL_SCHEMES`` are taken) at the pushed commit, submitted like
``POST /api/v1/builds`` with ``CI_PIPELINE_SOURCE`` ``push`` or ``merge_request_event``.
Every delivery id is claimed in the ``hook_deliveries`` ledger (:mod:`farm.db.hooks`)
before its build is submitted, so a replay answers 200 with the first build and
creates nothing twice. A build made here remembers its origin (the host, its API URL and
the repository or project), so its commit status goes back there (farm/api/commit_status.py).

Answers: 201 a build was made; 200 ``ping``, or a replay (with its build); 202 accepted
but nothing to build (another event, a branch deletion, a closed pull request,
``workflow: rules`` said no, or the same delivery still being submitted).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, SecretStr
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException

from farm.api.deps import CoordinatorDep, SettingsDep
from farm.api.errors import errors
from farm.api.schemas import BuildOut
from farm.coordinator.service import Coordinator
from farm.coordinator.submit import Submission, submit
from farm.db.hooks import HookDeliveries
from farm.domain.records import BuildRecord
from farm.errors import InvalidRequest, NotFound, PipelineFilteredOut
from farm.githost.payloads import (
    Target,
    check_clone_url,
    github_target,
    gitlab_target,
)

__all__ = ["HookOut", "install", "router"]

router = APIRouter(prefix="/api/v1/hooks", tags=["hooks"])
_MAX_HEADER = 256


# --- answers -----------------------------------------------------------------------------


Outcome = Literal["built", "replayed", "pending", "ignored", "pong"]


class HookOut(BaseModel):
    """What a webhook delivery did."""

    delivery: str | None = Field(description="the delivery id de-duplicated on, if any")
    event: str = Field(description="the host's event name (X-GitHub-Event, X-Gitlab-Event)")
    outcome: Outcome = Field(
        description="built: a new build (201); replayed: this delivery already made "
        "``build`` (200); pending: the first copy is still being submitted (202); "
        "ignored: nothing to build (202); pong: a ping (200)"
    )
    reason: str = Field(description="one line saying why")
    build: BuildOut | None = Field(default=None, description="the build this delivery made")


def _unauthorized(description: str) -> dict[str, Any]:
    # errors() knows the API-wide statuses; 401 is particular to the hooks (the same shape).
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }


def _responses(secret_setting: str, what: str) -> dict[int | str, dict[str, Any]]:
    return {
        200: {"model": HookOut, "description": "A ping, or a replayed delivery and its build"},
        202: {"model": HookOut, "description": "Accepted, nothing built (see ``reason``)"},
        401: _unauthorized(f"Missing or wrong {what}: nothing was created"),
        **errors(
            404,
            422,
            s404=f"Webhooks from this host are off: {secret_setting} is not set",
            s422="The payload lacks what the event needs, its clone URL is not an allowed "
            "URL (never a local path), or the commit or its pipeline cannot be built",
        ),
    }


_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}


def _answer(
    status: int,
    event: str,
    outcome: Outcome,
    reason: str,
    delivery: str | None = None,
    build: BuildRecord | None = None,
) -> JSONResponse:
    out = HookOut(
        delivery=delivery,
        event=event,
        outcome=outcome,
        reason=reason,
        build=BuildOut.of(build) if build is not None else None,
    )
    headers = {"Location": f"/api/v1/builds/{build.id}"} if build is not None else None
    return JSONResponse(out.model_dump(mode="json"), status_code=status, headers=headers)


# --- dependencies ------------------------------------------------------------------------


async def _raw_body(request: Request) -> bytes:
    # Read through the app's BodyLimit: a body over FARM_MAX_REQUEST_BYTES is a 413 before
    # it is read whole, so the bytes signed and parsed here are the bounded ones.
    return await request.body()


async def _deliveries(request: Request) -> HookDeliveries:
    deliveries: HookDeliveries = request.app.state.hook_deliveries
    return deliveries


RawBody = Annotated[bytes, Depends(_raw_body)]
DeliveriesDep = Annotated[HookDeliveries, Depends(_deliveries)]


def _header(name: str) -> Any:
    return Header(alias=name, max_length=_MAX_HEADER)


# --- what to build -----------------------------------------------------------------------


def json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except ValueError:  # UnicodeDecodeError included
        raise HTTPException(400, "the body is not JSON (configure the hook to send JSON)") from None
    if not isinstance(payload, dict):
        raise InvalidRequest("the payload is not a JSON object")
    return payload


def _build_once(
    coord: Coordinator,
    deliveries: HookDeliveries,
    host: str,
    event: str,
    delivery: str,
    target: Target,
    allowed: list[str],
) -> JSONResponse:
    check_clone_url(target.repo, allowed)
    key = f"{host}:{delivery}"
    claim = deliveries.claim(key, host, event)
    if not claim.new:
        if claim.build_id is None:
            return _answer(202, event, "pending", "this delivery is being submitted", delivery)
        build = coord.store.get_build(claim.build_id)
        reason = f"delivery already built as build {build.id}: nothing new created"
        return _answer(200, event, "replayed", reason, delivery, build)
    try:
        build = submit(
            coord,
            Submission(
                repo=target.repo,
                ref=target.ref,
                commit=target.commit,
                source=target.source,
                origin=target.origin,
            ),
        )
    except PipelineFilteredOut as exc:
        deliveries.release(key)
        return _answer(202, event, "ignored", str(exc), delivery)
    except BaseException:
        deliveries.release(key)  # nothing was built: a redelivery may try again
        raise
    deliveries.settle(key, build.id)
    reason = f"build {build.id} of {target.ref} at {target.commit[:8]}"
    return _answer(201, event, "built", reason, delivery, build)


# --- GitHub ------------------------------------------------------------------------------


@router.post(
    "/github",
    status_code=201,
    response_model=HookOut,
    responses=_responses("FARM_GITHUB_WEBHOOK_SECRET", "X-Hub-Signature-256"),
    openapi_extra=_BODY,
)
def github(
    body: RawBody,
    coord: CoordinatorDep,
    deliveries: DeliveriesDep,
    settings: SettingsDep,
    signature: Annotated[str | None, _header("X-Hub-Signature-256")] = None,
    event: Annotated[str | None, _header("X-GitHub-Event")] = None,
    delivery: Annotated[str | None, _header("X-GitHub-Delivery")] = None,
) -> JSONResponse:
    """A GitHub webhook (content type ``application/json``): builds ``push`` and
    ``pull_request`` (opened, synchronize, reopened: the head commit); ``ping`` answers."""
    key = _key(settings.github_webhook_secret, "GitHub", "FARM_GITHUB_WEBHOOK_SECRET")
    expected = b"sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest().encode()
    given = (signature or "").encode("utf-8", "replace")
    if not hmac.compare_digest(expected, given):
        raise HTTPException(401, "missing or wrong X-Hub-Signature-256: nothing was created")
    name = event or ""
    if name == "ping":
        return _answer(200, name, "pong", "webhook configured", delivery)
    if not delivery:
        raise InvalidRequest("X-GitHub-Delivery is missing: deliveries are de-duplicated by it")
    found = github_target(name, json_object(body), settings.github_api_url)
    if isinstance(found, str):
        return _answer(202, name, "ignored", found, delivery)
    allowed = settings.hook_allowed_url_schemes
    return _build_once(coord, deliveries, "github", name, delivery, found, allowed)


# --- GitLab ------------------------------------------------------------------------------


@router.post(
    "/gitlab",
    status_code=201,
    response_model=HookOut,
    responses=_responses("FARM_GITLAB_WEBHOOK_TOKEN", "X-Gitlab-Token"),
    openapi_extra=_BODY,
)
def gitlab(
    body: RawBody,
    coord: CoordinatorDep,
    deliveries: DeliveriesDep,
    settings: SettingsDep,
    token: Annotated[str | None, _header("X-Gitlab-Token")] = None,
    event: Annotated[str | None, _header("X-Gitlab-Event")] = None,
    uuid: Annotated[str | None, _header("X-Gitlab-Event-UUID")] = None,
) -> JSONResponse:
    """A GitLab webhook: builds ``Push Hook``, ``Tag Push Hook`` and ``Merge Request Hook``
    (open, reopen, and update with new commits: the source branch's last commit)."""
    key = _key(settings.gitlab_webhook_token, "GitLab", "FARM_GITLAB_WEBHOOK_TOKEN")
    if not hmac.compare_digest(key, (token or "").encode("utf-8", "replace")):
        raise HTTPException(401, "missing or wrong X-Gitlab-Token: nothing was created")
    name = event or ""
    found = gitlab_target(name, json_object(body), settings.gitlab_url)
    if isinstance(found, str):
        return _answer(202, name, "ignored", found, uuid)
    # Without the event UUID (older GitLab), the commit and ref identify the delivery.
    delivery = uuid or f"{found.commit}:{found.ref}:{found.source}"
    allowed = settings.hook_allowed_url_schemes
    return _build_once(coord, deliveries, "gitlab", name, delivery, found, allowed)


def _key(secret: SecretStr | None, host: str, setting: str) -> bytes:
    """The configured secret of a host's endpoint; NotFound (the endpoint is off) if unset."""
    key = secret.get_secret_value().encode() if secret is not None else b""
    if not key:
        raise NotFound(f"{host} webhooks are off: {setting} is not set")
    return key


def install(app: FastAPI, sessions: sessionmaker[Session]) -> None:
    """Mount the webhook routes on ``app`` with their delivery ledger."""
    app.state.hook_deliveries = HookDeliveries(sessions)
    app.include_router(router)
