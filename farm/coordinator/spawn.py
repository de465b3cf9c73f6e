"""Running one job of a finished build again, on that build's behalf (a *child* build).

A rollout's deploy job and its job checks are jobs of the released build's pipeline, run
at each step in a fresh container. They run as a build of their own — so they are
dispatched, retried, logged, reaped and shown like any other job — linked to the
released build (``parent_build_id``). Its job starts at once (no needs, ``on_success``,
never allowed to fail: a deploy that fails must fail the step) and receives the parent
build's artifacts as its inputs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from farm.coordinator.service import Coordinator
from farm.domain.records import BuildRecord, NewBuild
from farm.domain.state import queue_for
from farm.domain.statuses import BuildStatus
from farm.errors import InvalidRequest


def spawn_job(
    coord: Coordinator, parent: BuildRecord, job_name: str, variables: Mapping[str, str]
) -> BuildRecord:
    """Start job ``job_name`` of ``parent``'s pipeline as a child build with ``variables``."""
    job = parent.job_named(job_name)
    if job is None:
        raise InvalidRequest(
            f"build {parent.id} has no job {job_name!r} "
            f"(jobs: {', '.join(j.name for j in parent.jobs) or 'none'})"
        )
    spec = dataclasses.replace(
        job.spec,
        needs=(),
        dependencies=None,
        when="on_success",
        start_in=None,
        allow_failure=False,
        allow_failure_exit_codes=(),
        resource_group=job.spec.resource_group,
        variables={**job.spec.variables, **variables},
    )
    new = NewBuild(
        project=parent.project,
        repo=parent.repo,
        ref=parent.ref,
        ref_kind=parent.ref_kind,
        default_branch=parent.default_branch,
        commit=parent.commit,
        pipeline_file=parent.pipeline_file,
        pipeline_digest=parent.pipeline_digest,
        snapshot_digest=parent.snapshot_digest,
        stages=(spec.stage,),
        variables=dict(parent.variables),
        jobs=((spec, queue_for(spec.tags)),),
        secrets=dict(parent.secrets),
        parent_build_id=parent.id,
    )
    build_id = coord.store.create_build(new, status=BuildStatus.PENDING)
    return coord.advance(build_id)
