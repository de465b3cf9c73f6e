"""The dashboard's pages, on the API's port: builds, a build's graph, a job's log,
deliverables, releases and rollouts.

Each page is rendered whole on the server (readable without JavaScript); the parts that
change while something runs are also served alone (``…/live``), and the page's script
re-fetches that fragment every second until it is final.  The log is read on from the
JSON API with its cursor.  Buttons call the JSON API itself (``static/dashboard.js``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import StringConstraints

from farm.api.dashboard import views
from farm.api.dashboard.render import render
from farm.api.dashboard.session import FragmentReaderDep, ReaderDep
from farm.api.deps import BlobsDep, StoreDep
from farm.api.limits import MAX_NAME, BuildIdPath, JobIdPath, NoControl, RolloutIdPath
from farm.deploy.engine import RolloutEngine
from farm.domain.auth import Principal, Scope
from farm.errors import FarmError

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)
Page = Annotated[int, Query(ge=1, le=10_000)]
# A filter form sends its empty fields too (``?project=&ref=``): empty means "any".
Filter = Annotated[str, StringConstraints(max_length=MAX_NAME), NoControl()]


def _engine(request: Request) -> RolloutEngine:
    engine: RolloutEngine = request.app.state.rollouts
    return engine


def _page(
    request: Request,
    principal: Principal,
    template: str,
    context: Callable[[], dict[str, Any]],
) -> Response:
    """Render ``template`` with ``context()``; a farm error (404, 409…) becomes an HTML
    page with the API's words and status instead of the API's JSON body."""
    common: dict[str, Any] = {
        "who": principal.name,
        "can_submit": principal.has(Scope.SUBMIT),
        "can_deploy": principal.has(Scope.DEPLOY),
    }
    try:
        values = context()
    except FarmError as exc:
        return render(
            request, "error.html", exc.http_status, error=str(exc), kind=type(exc).__name__
        )
    return render(request, template, **common, **values)


@router.get("/")
def builds_page(
    request: Request,
    principal: ReaderDep,
    store: StoreDep,
    project: Filter = "",
    ref: Filter = "",
    status: Filter = "",
    page: Page = 1,
) -> Response:
    """The builds list: newest first, filters, paging."""
    listing = views.build_list(store, project, ref, status, page)
    filters = {"project": project or "", "ref": ref or "", "status": status or ""}
    return _page(
        request,
        principal,
        "builds.html",
        lambda: {
            "listing": listing,
            "filters": filters,
            "statuses": views.BUILD_STATUSES,
            "started_by": views.started_by,
        },
    )


def _build_context(store: StoreDep, build_id: int) -> dict[str, Any]:
    return {"view": views.build_view(store, build_id), "started_by": views.started_by}


@router.get("/builds/{build_id}")
def build_page(
    build_id: BuildIdPath, request: Request, principal: ReaderDep, store: StoreDep
) -> Response:
    """A build: its pipeline graph, live while it runs; cancel and play buttons."""
    return _page(request, principal, "build.html", lambda: _build_context(store, build_id))


@router.get("/builds/{build_id}/live")
def build_live(
    build_id: BuildIdPath, request: Request, principal: FragmentReaderDep, store: StoreDep
) -> Response:
    """The changing part of the build page alone (polled by the page's script)."""
    return _page(request, principal, "_build_live.html", lambda: _build_context(store, build_id))


@router.get("/jobs/{job_id}")
def job_page(
    job_id: JobIdPath, request: Request, principal: ReaderDep, store: StoreDep
) -> Response:
    """A job: its log (streamed on while it runs), exit code, timings, artifacts."""
    return _page(request, principal, "job.html", lambda: {"view": views.job_view(store, job_id)})


@router.get("/jobs/{job_id}/live")
def job_live(
    job_id: JobIdPath, request: Request, principal: FragmentReaderDep, store: StoreDep
) -> Response:
    """The job's facts alone (status, timings, worker, artifacts), polled while it runs."""

    def context() -> dict[str, Any]:
        job, build = views.job_summary(store, job_id)
        return {"job": job, "build": build, "final": job.status in views.FINAL_JOB}

    return _page(request, principal, "_job_live.html", context)


@router.get("/builds/{build_id}/deliverable")
def deliverable_page(
    build_id: BuildIdPath,
    request: Request,
    principal: ReaderDep,
    store: StoreDep,
    blobs: BlobsDep,
) -> Response:
    """A build's deliverable: the manifest, each artifact's files, downloads, provenance."""

    def context() -> dict[str, Any]:
        view = views.deliverable_view(request, store, blobs, build_id)
        return {"view": view, "files": views.files_by_digest(view)}

    return _page(request, principal, "deliverable.html", context)


@router.get("/releases")
def releases_page(request: Request, principal: ReaderDep, project: Filter = "") -> Response:
    """Releases and rollouts of every project, or of one."""

    def context() -> dict[str, Any]:
        releases, rollouts = views.releases_view(request, _engine(request), project or None)
        return {"releases": releases, "rollouts": rollouts, "project": project or ""}

    return _page(request, principal, "releases.html", context)


def _rollout_context(request: Request, rollout_id: int) -> dict[str, Any]:
    rollout = views.rollout_view(_engine(request), rollout_id)
    return {
        "rollout": rollout,
        "actions": views.ROLLOUT_ACTIONS.get(rollout.state, ()),
        "active": rollout.state in views.ROLLOUT_ACTIVE,
        "figures": views.figures,
    }


@router.get("/rollouts/{rollout_id}")
def rollout_page(rollout_id: RolloutIdPath, request: Request, principal: ReaderDep) -> Response:
    """A rollout: steps with each scope's version now, checks, history, commands."""
    return _page(request, principal, "rollout.html", lambda: _rollout_context(request, rollout_id))


@router.get("/rollouts/{rollout_id}/live")
def rollout_live(
    rollout_id: RolloutIdPath, request: Request, principal: FragmentReaderDep
) -> Response:
    """The rollout's changing part alone (polled while it is active)."""
    return _page(
        request, principal, "_rollout_live.html", lambda: _rollout_context(request, rollout_id)
    )
