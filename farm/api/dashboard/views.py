"""What each page shows, read through the API's own document builders (no second source).

Every view builds the same documents the JSON API serves — ``build_document``,
``JobOut``, ``ReleaseOut``, ``rollout_out`` — from the same store, so a page and
``/api/v1`` can never disagree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from markupsafe import Markup

from farm.api.dashboard.ansi import to_html
from farm.api.dashboard.graph import Graph, layout
from farm.api.routers.builds import get_deliverable
from farm.api.routers.registry import ArtifactItem, registry_db
from farm.api.routers.releases import ReleaseOut
from farm.api.routers.rollouts import RolloutOut, rollout_out
from farm.api.schemas import BuildOut, JobOut, build_document
from farm.db.repository import Store
from farm.deploy.engine import RolloutEngine
from farm.domain.records import BuildRecord, PipelineSource
from farm.domain.statuses import FINAL_BUILD, FINAL_JOB, BuildStatus
from farm.registry.store import BlobStore

PER_PAGE = 25
BUILD_STATUSES = [s.value for s in BuildStatus]
_SOURCES: dict[str, str] = {
    PipelineSource.API: "API / CLI",  # the CLI submits through the API
    PipelineSource.PUSH: "webhook · push",
    PipelineSource.MERGE_REQUEST_EVENT: "webhook · merge request",
    PipelineSource.SCHEDULE: "schedule",
}


def started_by(source: str, parent_build: int | None) -> str:
    """Who or what started a build, in words: API/CLI, webhook, schedule, rollout."""
    if parent_build is not None:
        return f"rollout (for build {parent_build})"
    return _SOURCES.get(source, source)


@dataclass(frozen=True)
class BuildList:
    """One page of the builds list."""

    builds: list[BuildOut]
    page: int
    has_next: bool


def build_list(
    store: Store, project: str | None, ref: str | None, status: str | None, page: int
) -> BuildList:
    """Newest builds first, filtered by the store, ``PER_PAGE`` a page (one extra row
    tells whether there is a next page)."""
    records = store.list_builds(
        PER_PAGE + 1, project or None, ref or None, status or None, offset=(page - 1) * PER_PAGE
    )
    return BuildList(
        builds=[BuildOut.of(b) for b in records[:PER_PAGE]],
        page=page,
        has_next=len(records) > PER_PAGE,
    )


@dataclass(frozen=True)
class BuildView:
    """A build document and its graph."""

    build: BuildOut
    graph: Graph
    by_stage: list[tuple[str, list[JobOut]]]
    final: bool
    cancelable: bool


def build_view(store: Store, build_id: int) -> BuildView:
    """The build document (as ``GET /api/v1/builds/{id}`` serves it) and its layout."""
    build = BuildOut.model_validate_json(build_document(*store.job_lines(build_id)))
    graph = layout(build.stages, build.jobs)
    by_stage = [(c.stage, [b.job for b in c.boxes]) for c in graph.columns]
    final = build.status in FINAL_BUILD
    return BuildView(build, graph, by_stage, final, cancelable=not final)


@dataclass(frozen=True)
class JobView:
    """One job, its build's header fields and its log so far."""

    job: JobOut
    build: BuildRecord
    log: Markup
    cursor: int
    final: bool


def job_view(store: Store, job_id: int) -> JobView:
    """The job (as ``GET /api/v1/jobs/{id}``) and its current attempt's log up to now."""
    record = store.get_job(job_id)
    job = JobOut.of(record)
    build = store.get_build(job.build_id, with_jobs=False)
    text, cursor = store.read_log(job_id, job.attempt, 0)
    return JobView(job, build, to_html(text), cursor, job.status in FINAL_JOB)


def job_summary(store: Store, job_id: int) -> tuple[JobOut, BuildRecord]:
    """The job and its build (for the live side panel)."""
    job = JobOut.of(store.get_job(job_id))
    return job, store.get_build(job.build_id, with_jobs=False)


@dataclass(frozen=True)
class DeliverableView:
    """A green build's deliverable manifest and the artifacts it lists."""

    build: BuildOut
    manifest: dict[str, Any] | None
    manifest_text: str
    artifacts: list[ArtifactItem]
    has_provenance: bool


def deliverable_view(
    request: Request, store: Store, blobs: BlobStore, build_id: int
) -> DeliverableView:
    """The manifest (verified read, as ``/api/v1/builds/{id}/deliverable``) and artifacts."""
    build = BuildOut.of(store.get_build(build_id, with_jobs=False))
    manifest = None
    if build.deliverable is not None:
        manifest = json.loads(bytes(get_deliverable(build_id, store, blobs).body))
    items = registry_db(request).search_artifacts(build=build_id, limit=2000)
    artifacts = [ArtifactItem.of(a) for a in items]
    return DeliverableView(
        build=build,
        manifest=manifest,
        manifest_text=json.dumps(manifest, indent=2, sort_keys=True) if manifest else "",
        artifacts=artifacts,
        has_provenance=any(a.kind == "provenance" for a in artifacts),
    )


def files_by_digest(view: DeliverableView) -> dict[str, list[str]]:
    """Each artifact's file list, from the manifest (the store's listing has no files)."""
    if not view.manifest:
        return {}
    return {a["digest"]: list(a.get("files") or []) for a in view.manifest.get("artifacts", [])}


def releases_view(
    request: Request, engine: RolloutEngine, project: str | None
) -> tuple[list[ReleaseOut], list[RolloutOut]]:
    """Releases and rollouts, newest first (as ``/api/v1/releases`` and ``/rollouts``)."""
    releases = [ReleaseOut.of(r) for r in registry_db(request).list_releases(project, 100)]
    rollouts = [
        rollout_out(engine, r, history=False) for r in engine.rollouts.list_rollouts(project, 50)
    ]
    return releases, rollouts


ROLLOUT_ACTIVE = {"pending", "progressing", "paused", "stepped_back"}
# Which of a person's commands make sense in each state (the engine still decides: a
# refused one answers 409 and the page says so).
ROLLOUT_ACTIONS = {
    "pending": ("abort",),
    "progressing": ("promote", "pause", "step-back", "abort"),
    "paused": ("promote", "resume", "step-back", "abort"),
    "stepped_back": ("promote", "step-back", "abort"),
}


def rollout_view(engine: RolloutEngine, rollout_id: int) -> RolloutOut:
    """One rollout with its history (as ``GET /api/v1/rollouts/{id}``)."""
    return rollout_out(engine, engine.rollouts.get(rollout_id))


def figures(value: Any) -> str:
    """A check's figures as compact text (nested values as JSON)."""
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, separators=(", ", ": "))
    return str(value)


__all__ = [
    "BUILD_STATUSES",
    "FINAL_BUILD",
    "FINAL_JOB",
    "PER_PAGE",
    "ROLLOUT_ACTIONS",
    "ROLLOUT_ACTIVE",
    "BuildList",
    "BuildView",
    "DeliverableView",
    "JobView",
    "build_list",
    "build_view",
    "deliverable_view",
    "figures",
    "files_by_digest",
    "job_summary",
    "job_view",
    "releases_view",
    "rollout_view",
    "started_by",
]
