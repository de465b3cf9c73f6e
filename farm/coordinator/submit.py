"""Turning a submitted commit into a persisted build: resolve, parse, snapshot, store.

Everything that can fail is checked before anything is written, so bad input
leaves no half-made build behind.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from farm.coordinator.service import Coordinator, digest_text
from farm.coordinator.source import Source, resolve
from farm.domain.records import (
    BuildOrigin,
    BuildRecord,
    NewBuild,
    PipelineSource,
    ref_variables,
)
from farm.domain.result_key import OPT_OUT_VARIABLE
from farm.domain.specs import PipelineContext, PipelineLimits
from farm.domain.state import is_interruptible, queue_for
from farm.domain.statuses import FINAL_BUILD, BuildStatus
from farm.errors import Conflict, PipelineError, SourceError
from farm.pipeline import find_pipeline_file, load_pipeline
from farm.pipeline.limits import check_stored_size
from farm.settings import Settings

log = logging.getLogger("farm.coordinator")


@dataclass(frozen=True)
class Submission:
    """What a person or a webhook asks for."""

    repo: str
    ref: str | None = None
    commit: str | None = None
    variables: tuple[tuple[str, str], ...] = ()
    secrets: tuple[tuple[str, str], ...] = ()  # masked variables
    no_cache: bool = False  # reuse no earlier job's result (farm/domain/result_key.py)
    source: str = PipelineSource.API  # CI_PIPELINE_SOURCE: what started the build
    origin: BuildOrigin | None = None  # the git host to report the commit status to


def predefined_variables(src: Source, source_kind: str) -> dict[str, str]:
    """GitLab's predefined variables known before the build exists (what rules see)."""
    return {
        "CI": "true",
        "FARM": "true",
        "GITLAB_CI": "true",  # many real pipelines branch on this
        "CI_COMMIT_SHA": src.commit,
        "CI_COMMIT_SHORT_SHA": src.commit[:8],
        "CI_PROJECT_NAME": src.project,
        "CI_PROJECT_PATH": src.project,
        "CI_DEFAULT_BRANCH": src.default_branch,
        "CI_PIPELINE_SOURCE": source_kind,
        **ref_variables(src.ref_kind, src.ref),
    }


def pipeline_limits(settings: Settings) -> PipelineLimits:
    """The farm's ``FARM_PIPELINE_MAX_*`` settings as the loader's limits."""
    return PipelineLimits(
        max_aliases=settings.pipeline_max_aliases,
        max_nodes=settings.pipeline_max_nodes,
        max_script_lines=settings.pipeline_max_script_lines,
        max_jobs=settings.pipeline_max_jobs,
        max_job_bytes=settings.pipeline_max_job_bytes,
        max_bytes=settings.pipeline_max_bytes,
        max_includes=settings.pipeline_max_includes,
    )


def catalog_reader(root: Path) -> Callable[[str], str | None]:
    """``read(path)`` for the component catalog directory, confined to ``root``."""
    base = root.resolve()

    def read(path: str) -> str | None:
        target = (base / path.lstrip("/")).resolve()
        if not target.is_relative_to(base) or not target.is_file():
            return None
        return target.read_text(encoding="utf-8", errors="replace")

    return read


def submit(coord: Coordinator, sub: Submission) -> BuildRecord:
    """Create and start a build for ``sub``; SourceError/PipelineError if it cannot run.
    Returns the build with its jobs."""
    return coord.store.get_build(start_build(coord, sub))


def start_build(coord: Coordinator, sub: Submission) -> int:
    """:func:`submit`, returning the build's id only (the API answers with a document it
    reads without parsing every job's spec again)."""
    settings = coord.settings
    src = resolve(sub.repo, sub.ref, sub.commit, settings.data_dir / "repos")
    files = src.files()
    name = find_pipeline_file(files)
    if name is None:
        where = f"{src.repo}" + (f" ({src.subdir})" if src.subdir else "")
        raise SourceError(
            f"no .farm-ci.yml or .gitlab-ci.yml at commit {src.commit[:8]} of {where}"
        )
    text = src.read(name) or ""
    # Secrets are known to rules (as on GitLab) but never copied into job specs.
    variables = {
        **predefined_variables(src, sub.source),
        **dict(sub.variables),
        **dict(sub.secrets),
    }
    limits = pipeline_limits(settings)
    catalog = settings.component_catalog  # include:component (docs/GITLAB_COMPAT.md)
    context = PipelineContext(
        variables=variables,
        files=files,
        read=src.read,
        changed=src.changed(),
        limits=limits,
        component_catalog=str(catalog) if catalog is not None else None,
        read_component=catalog_reader(catalog) if catalog is not None else None,
    )
    # The loader counts what the pipeline expands to while it loads (aliases, nodes, script
    # lines, jobs, spec bytes) and stops at the first limit passed.
    pipeline = load_pipeline(text, name, context)
    if not pipeline.jobs:
        raise PipelineError(f"{name}: the pipeline has no jobs for ref {src.ref!r}")
    # What will be stored, measured once more as stored (JSON), before anything is written:
    # a refused pipeline leaves no build, no jobs and no snapshot behind.
    check_stored_size(pipeline, limits, name)
    snapshot = coord.blobs.put_stream(src.snapshot(), max_size=settings.max_blob_bytes)
    new = NewBuild(
        project=src.project,
        repo=sub.repo,
        ref=src.ref,
        ref_kind=src.ref_kind,
        default_branch=src.default_branch,
        commit=src.commit,
        pipeline_file=name,
        pipeline_digest=digest_text(text),
        snapshot_digest=snapshot.digest,
        stages=pipeline.stages,
        # Job specs already carry the pipeline's own; --no-cache is a build variable.
        variables={**dict(sub.variables), **({OPT_OUT_VARIABLE: "false"} if sub.no_cache else {})},
        jobs=tuple((job, queue_for(job.tags)) for job in pipeline.jobs),
        secrets=dict(sub.secrets),
        source=sub.source,
        origin=sub.origin,
    )
    build_id = coord.store.create_build(new, status=BuildStatus.PENDING)
    coord.build_changed(build_id)  # made pending (a commit status "pending" for the host)
    cancel_redundant(coord, build_id)
    coord.start(build_id, new)
    return build_id


def cancel_redundant(coord: Coordinator, build_id: int) -> list[int]:
    """GitLab's auto-cancel of redundant pipelines: older, unfinished builds of the same
    project and ref are canceled when every job of theirs that started is ``interruptible``.

    Returns the ids of the builds canceled. Runs after the new build is stored, so a
    refused submission never cancels anything.
    """
    new = coord.store.get_build(build_id, with_jobs=False)  # its header is enough
    canceled: list[int] = []
    for old in coord.store.list_builds(limit=100, project=new.project, ref=new.ref):
        if old.id >= build_id or old.status in FINAL_BUILD or old.repo != new.repo:
            continue
        full = coord.store.get_build(old.id)
        jobs = [(j.status, j.spec.interruptible, j.started_at is not None) for j in full.jobs]
        if not is_interruptible(jobs):
            continue
        try:
            coord.cancel(old.id)
        except Conflict:
            continue  # it finished meanwhile
        coord.store.update_build(old.id, error=f"auto-canceled: build {build_id} is newer")
        log.info("build %s auto-canceled by newer build %s", old.id, build_id)
        canceled.append(old.id)
    return canceled
