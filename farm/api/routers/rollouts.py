"""``/api/v1/rollouts`` and ``/api/v1/deliver``: staged rollouts and who gets which version.

``POST /rollouts {project, version}`` starts a rollout of a release by the plan in its
commit (201; 409 while another rollout of the project is active; 422 with file:line for a
bad plan). ``POST /rollouts/{id}/{promote|pause|resume|step-back|abort}`` are people's
commands: each a compare-and-set, so of two concurrent commands one wins and the other
gets 409. ``GET /deliver/{project}?ip=`` answers which version an address gets.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from farm.api.auth import requires
from farm.api.deps import SettingsDep
from farm.api.errors import errors
from farm.api.limits import Line, NoControl, RolloutIdPath, Version
from farm.deploy.engine import RolloutEngine
from farm.deploy.routing import Routing, client_address
from farm.domain.auth import Scope
from farm.errors import NotFound
from farm.rollout import state as rules
from farm.rollout.model import HttpCheck, Plan
from farm.rollout.records import RolloutRecord

router = APIRouter(prefix="/api/v1", tags=["rollouts"])
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,254}$"


async def _engine(request: Request) -> RolloutEngine:
    engine: RolloutEngine = request.app.state.rollouts
    return engine


EngineDep = Annotated[RolloutEngine, Depends(_engine)]


class StartRequest(BaseModel):
    """Roll a release out: which project and version, and who asks."""

    project: str = Field(min_length=1, max_length=255, pattern=_NAME)
    version: Version
    actor: Line = "api"


class ActionRequest(BaseModel):
    """A person's command on a rollout."""

    actor: Line = "api"
    reason: Annotated[str, Field(max_length=2000), NoControl(text=True)] = ""
    full: bool = False  # promote only: to the last step at once


class StepOut(BaseModel):
    """One step as the status tree shows it."""

    index: int
    scope: str
    state: str
    version: str | None  # what this scope's clients get now
    cidrs: int
    bake: float
    approve: str
    checks: list[dict[str, Any]]


class EventOut(BaseModel):
    """One history line."""

    at: datetime
    actor: str
    event: str
    from_: str = Field(alias="from")
    to: str
    from_step: int
    to_step: int
    reason: str
    figures: dict[str, Any]

    model_config = {"populate_by_name": True}


class RolloutOut(BaseModel):
    """A rollout: state, steps with the version each scope gets, last checks, history."""

    id: int
    project: str
    version: str
    previous_version: str | None
    state: str
    step: int  # index into steps (0-based)
    revision: int
    attempt: int
    reason: str
    phase: str
    phase_until: datetime | None
    deploy_job: str | None
    job_build: int | None  # the build running this step's deploy job, once started
    steps: list[StepOut]
    checks: dict[str, Any]
    actor: str
    created_at: datetime
    updated_at: datetime
    history: list[EventOut] = []


def rollout_out(engine: RolloutEngine, rec: RolloutRecord, history: bool = True) -> RolloutOut:
    """The API document of a rollout."""
    plan: Plan = engine.plan_of(rec)
    snap = rec.snapshot
    live = set(rules.live_steps(snap))
    steps = [
        StepOut(
            index=i,
            scope=s.scope,
            state=snap.steps[i],
            version=snap.version if i in live else snap.previous_version,
            cidrs=len(plan.cidrs_of(s.scope)),
            bake=s.bake,
            approve=s.approve,
            checks=[
                {"kind": "http", "url": c.url, "samples": c.samples}
                if isinstance(c, HttpCheck)
                else {"kind": "job", "job": c.job}
                for c in s.checks
            ],
        )
        for i, s in enumerate(plan.steps)
    ]
    events = engine.rollouts.history(rec.id) if history else []
    return RolloutOut(
        id=rec.id,
        project=rec.project,
        version=snap.version,
        previous_version=snap.previous_version,
        state=snap.state,
        step=snap.step,
        revision=snap.revision,
        attempt=snap.attempt,
        reason=snap.reason,
        phase=rec.phase,
        phase_until=rec.phase_until,
        deploy_job=plan.deploy_job,
        job_build=rec.job_build_id,
        steps=steps,
        checks=rec.checks,
        actor=rec.actor,
        created_at=rec.created_at,
        updated_at=rec.updated_at,
        history=[EventOut.model_validate(e.to_dict()) for e in events],
    )


@router.post(
    "/rollouts",
    dependencies=[requires(Scope.DEPLOY)],
    status_code=201,
    response_model=RolloutOut,
    responses=errors(
        404,
        409,
        422,
        s404="No such release",
        s409="Another rollout of the project is active",
        s422="Invalid request, or the release's plan cannot be used (problems: file:line:col)",
    ),
)
def start(body: StartRequest, engine: EngineDep, response: Response) -> RolloutOut:
    """Start rolling a release out (a person's start approves a manual first step)."""
    rec = engine.start(body.project, body.version, actor=body.actor)
    response.headers["Location"] = f"/api/v1/rollouts/{rec.id}"
    return rollout_out(engine, rec)


@router.get("/rollouts", dependencies=[requires(Scope.READ)], response_model=list[RolloutOut])
def list_rollouts(
    engine: EngineDep,
    project: Line | None = None,
    limit: int = Query(50, ge=1, le=500),
) -> list[RolloutOut]:
    """Rollouts, newest first (without history)."""
    return [
        rollout_out(engine, r, history=False) for r in engine.rollouts.list_rollouts(project, limit)
    ]


@router.get(
    "/rollouts/{rollout_id}",
    dependencies=[requires(Scope.READ)],
    response_model=RolloutOut,
    responses=errors(404),
)
def get_rollout(rollout_id: RolloutIdPath, engine: EngineDep) -> RolloutOut:
    """One rollout with its history."""
    return rollout_out(engine, engine.rollouts.get(rollout_id))


@router.get(
    "/rollouts/{rollout_id}/history",
    dependencies=[requires(Scope.READ)],
    response_model=list[EventOut],
    responses=errors(404),
)
def history(rollout_id: RolloutIdPath, engine: EngineDep) -> list[EventOut]:
    """The append-only history: who, when, from, to, why (with the check figures)."""
    engine.rollouts.get(rollout_id)
    return [EventOut.model_validate(e.to_dict()) for e in engine.rollouts.history(rollout_id)]


_TEXT = {"text/plain": {"schema": {"type": "string"}}}


@router.get(
    "/rollouts/{rollout_id}/scopes/{scope}",
    dependencies=[requires(Scope.READ)],
    response_class=PlainTextResponse,
    responses={200: {"description": "One CIDR a line", "content": _TEXT}, **errors(404)},
)
def scope_cidrs(rollout_id: RolloutIdPath, scope: Line, engine: EngineDep) -> str:
    """A scope's CIDRs, one per line (for deploy jobs of scopes too big for a variable)."""
    plan = engine.plan_of(engine.rollouts.get(rollout_id))
    try:
        return "\n".join(plan.cidrs_of(scope)) + "\n"
    except KeyError:
        raise NotFound(f"rollout {rollout_id} has no scope {scope!r}") from None


def _action(name: str) -> Any:
    def act(rollout_id: RolloutIdPath, body: ActionRequest, engine: EngineDep) -> RolloutOut:
        rec = engine.command(rollout_id, name, actor=body.actor, reason=body.reason, full=body.full)
        return rollout_out(engine, rec)

    act.__doc__ = f"{name.replace('_', '-')} the rollout (409 if refused or raced)."
    act.__name__ = name
    return act


for _name in ("promote", "pause", "resume", "step_back", "abort"):
    router.add_api_route(
        f"/rollouts/{{rollout_id}}/{_name.replace('_', '-')}",
        _action(_name),
        methods=["POST"],
        dependencies=[requires(Scope.DEPLOY)],
        response_model=RolloutOut,
        name=_name,
        responses=errors(404, 409, s409="Refused in this state, or raced by another command"),
    )


async def _routing(request: Request) -> Routing:
    engine: RolloutEngine = request.app.state.rollouts
    return engine.routing


RoutingDep = Annotated[Routing, Depends(_routing)]


@router.get(
    "/deliver/{project:path}/nginx-geo",
    dependencies=[requires(Scope.READ)],
    response_class=PlainTextResponse,
    responses={200: {"description": "An nginx geo block", "content": _TEXT}, **errors(404)},
)
def nginx_geo(project: Line, routing: RoutingDep, settings: SettingsDep) -> str:
    """An nginx ``geo`` block that routes ``project``'s clients as ``/deliver`` does."""
    return routing.nginx_geo(project, settings.trusted_proxies)


@router.get("/deliver/{project:path}", responses=errors(404))
def deliver(
    project: Line,
    request: Request,
    routing: RoutingDep,
    settings: SettingsDep,
    ip: Annotated[
        str | None,
        Query(
            max_length=64,
            pattern=NoControl().pattern,
            description="default: the caller's address",
        ),
    ] = None,
) -> dict[str, Any]:
    """Which version ``ip`` gets: the most specific live scope wins; else the previous one."""
    address = ip or client_address(
        request.client.host if request.client else None,
        request.headers.get("x-forwarded-for"),
        settings.trusted_proxies,
    )
    return routing.deliver(project, address)
