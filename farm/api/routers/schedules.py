"""``/api/v1/schedules``: pipeline schedules (GitLab's): build a ref on a cron timetable.

The API's timer fires them (:mod:`farm.coordinator.schedules`); ``POST /{id}/run`` fires
one now (the timetable is untouched). Reading needs ``read``; creating, changing,
deleting and running need ``submit``, and a schedule of a path on the coordinator's disk
needs what building that path needs (``FARM_LOCAL_REPO_SCOPE``) for each of those.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy.orm import Session, sessionmaker

from farm.api.auth import PrincipalDep, check_repo_access, requires
from farm.api.deps import SettingsDep
from farm.api.errors import errors
from farm.api.limits import MAX_ID, Line, NoControl
from farm.api.schemas import BuildOut, RepoText, Variables
from farm.coordinator.schedules import Scheduler
from farm.coordinator.service import Coordinator
from farm.db.schedules import ScheduleDb
from farm.domain.auth import Scope
from farm.domain.clock import utcnow
from farm.domain.schedules import (
    NewSchedule,
    ScheduleRecord,
    check_cron,
    check_timezone,
    next_run,
)

__all__ = ["ScheduleIn", "ScheduleOut", "ScheduleUpdate", "install", "router"]

router = APIRouter(prefix="/api/v1/schedules", tags=["schedules"])

Cron = Annotated[
    str,
    StringConstraints(min_length=1, max_length=255),
    NoControl(),
    Field(description="five cron fields: minute hour day-of-month month day-of-week"),
]
Description = Annotated[str, StringConstraints(max_length=255), NoControl()]
ScheduleIdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="a schedule's id")]


class ScheduleIn(BaseModel):
    """``POST /api/v1/schedules``."""

    model_config = ConfigDict(extra="forbid")

    repo: RepoText = Field(description="git URL (a path on the coordinator needs admin)")
    ref: Line = Field(description="the branch or tag to build")
    cron: Cron
    timezone: Line = Field(default="UTC", description="IANA time zone the cron is read in")
    project: Line | None = Field(default=None, description="default: the repo's name")
    description: Description = ""
    variables: Variables = Field(default_factory=dict)
    active: bool = True


class ScheduleUpdate(BaseModel):
    """``PATCH /api/v1/schedules/{id}``: the fields given change (``active``: pause/resume)."""

    model_config = ConfigDict(extra="forbid")

    repo: RepoText | None = None
    ref: Line | None = None
    cron: Cron | None = None
    timezone: Line | None = None
    project: Line | None = None
    description: Description | None = None
    variables: Variables | None = None
    active: bool | None = None


class ScheduleOut(BaseModel):
    """A schedule and what it last did."""

    id: int
    project: str
    repo: str
    ref: str
    cron: str
    timezone: str
    description: str
    variables: dict[str, str]
    active: bool
    next_run_at: datetime | None = Field(description="UTC; null while paused")
    last_run_at: datetime | None
    last_build: int | None = Field(description="the last build a run made")
    last_error: str | None = Field(description="why the last run made no build")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, s: ScheduleRecord) -> ScheduleOut:
        """From a record."""
        return cls(
            id=s.id,
            project=s.project,
            repo=s.repo,
            ref=s.ref,
            cron=s.cron,
            timezone=s.timezone,
            description=s.description,
            variables=s.variables,
            active=s.active,
            next_run_at=s.next_run_at,
            last_run_at=s.last_run_at,
            last_build=s.last_build_id,
            last_error=s.last_error,
            created_at=s.created_at,
            updated_at=s.updated_at,
        )


def _db(request: Request) -> ScheduleDb:
    db: ScheduleDb = request.app.state.schedules
    return db


def _project_of(repo: str) -> str:
    return repo.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git") or "project"


@router.post(
    "",
    dependencies=[requires(Scope.SUBMIT)],
    status_code=201,
    response_model=ScheduleOut,
    responses=errors(403, 422, s422="A bad cron expression or time zone, or invalid fields"),
)
def create_schedule(
    body: ScheduleIn,
    request: Request,
    principal: PrincipalDep,
    settings: SettingsDep,
    response: Response,
) -> ScheduleOut:
    """Create a schedule; its first run is the cron's next slot from now."""
    check_repo_access(principal, body.repo, settings)
    new = NewSchedule(
        project=body.project or _project_of(body.repo),
        repo=body.repo,
        ref=body.ref,
        cron=check_cron(body.cron),
        timezone=check_timezone(body.timezone),
        description=body.description,
        variables=dict(body.variables),
        active=body.active,
    )
    first = next_run(new.cron, new.timezone, utcnow()) if new.active else None
    schedule = _db(request).create(new, first)
    response.headers["Location"] = f"{router.prefix}/{schedule.id}"
    return ScheduleOut.of(schedule)


@router.get("", dependencies=[requires(Scope.READ)], response_model=list[ScheduleOut])
def list_schedules(
    request: Request, project: Annotated[Line | None, Query()] = None
) -> list[ScheduleOut]:
    """Every schedule (of ``project``), oldest first."""
    return [ScheduleOut.of(s) for s in _db(request).find(project)]


@router.get(
    "/{schedule_id}",
    dependencies=[requires(Scope.READ)],
    response_model=ScheduleOut,
    responses=errors(404),
)
def get_schedule(schedule_id: ScheduleIdPath, request: Request) -> ScheduleOut:
    """One schedule."""
    return ScheduleOut.of(_db(request).get(schedule_id))


@router.patch(
    "/{schedule_id}",
    dependencies=[requires(Scope.SUBMIT)],
    response_model=ScheduleOut,
    responses=errors(403, 404, 422),
)
def update_schedule(
    schedule_id: ScheduleIdPath,
    body: ScheduleUpdate,
    request: Request,
    principal: PrincipalDep,
    settings: SettingsDep,
) -> ScheduleOut:
    """Change a schedule. A new cron or time zone, or a resume, counts the next run from
    now (missed slots are not made up); a pause clears it."""
    given = body.model_dump(exclude_unset=True)
    if body.repo is not None:
        check_repo_access(principal, body.repo, settings)
    if "cron" in given and body.cron is not None:
        given["cron"] = check_cron(body.cron)
    if "timezone" in given and body.timezone is not None:
        given["timezone"] = check_timezone(body.timezone)
    fields = {k: v for k, v in given.items() if v is not None}

    def change(current: ScheduleRecord) -> dict[str, Any]:
        check_repo_access(principal, current.repo, settings)
        cron = fields.get("cron", current.cron)
        timezone = fields.get("timezone", current.timezone)
        active = fields.get("active", current.active)
        timing = cron != current.cron or timezone != current.timezone
        out = dict(fields)
        if not active:
            out["next_run_at"] = None
        elif timing or not current.active or current.next_run_at is None:
            out["next_run_at"] = next_run(cron, timezone, utcnow())
        return out

    return ScheduleOut.of(_db(request).update(schedule_id, change))


@router.delete(
    "/{schedule_id}",
    dependencies=[requires(Scope.SUBMIT)],
    status_code=204,
    response_class=Response,
    responses=errors(404),
)
def delete_schedule(schedule_id: ScheduleIdPath, request: Request) -> Response:
    """Delete a schedule (the builds it made stay)."""
    _db(request).delete(schedule_id)
    return Response(status_code=204)


@router.post(
    "/{schedule_id}/run",
    dependencies=[requires(Scope.SUBMIT)],
    status_code=201,
    response_model=BuildOut,
    responses=errors(403, 404, 422, s422="The schedule's ref or pipeline cannot be built"),
)
def run_schedule(
    schedule_id: ScheduleIdPath,
    request: Request,
    principal: PrincipalDep,
    settings: SettingsDep,
    response: Response,
) -> BuildOut:
    """Run a schedule now (``CI_PIPELINE_SOURCE=schedule``); its timetable is untouched."""
    schedule = _db(request).get(schedule_id)
    check_repo_access(principal, schedule.repo, settings)
    scheduler: Scheduler = request.app.state.scheduler
    build = scheduler.fire(schedule, utcnow(), reraise=True)
    assert build is not None  # reraise: an error was raised instead
    response.headers["Location"] = f"/api/v1/builds/{build.id}"
    return BuildOut.of(build)


def install(app: FastAPI, coord: Coordinator, sessions: sessionmaker[Session]) -> Scheduler:
    """Mount the schedule routes; the timer (``Scheduler.run``) is the lifespan's to start."""
    app.state.schedules = ScheduleDb(sessions)
    app.state.scheduler = Scheduler(coord, app.state.schedules)
    app.include_router(router)
    scheduler: Scheduler = app.state.scheduler
    return scheduler
