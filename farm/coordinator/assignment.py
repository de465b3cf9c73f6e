"""What a worker receives when it claims a job: everything needed, nothing shared.

A worker on another host gets image, scripts, environment, limits and the
digests of its inputs; it fetches those over HTTP and needs no filesystem of ours.

Secrets (the build's and its project's) travel only here, in the claim's answer, and
every masked one is listed in ``masks`` for the worker to hide in the log.  A project's
secrets are given only to builds of the repository the project is bound to, its
protected ones only to builds of a protected ref (:func:`farm.domain.secrets.applicable`).
A build of another repository with the same base name (the same ``project``) gets none
of them, and ``CI_COMMIT_REF_PROTECTED`` is false for it.
"""

from __future__ import annotations

from farm.coordinator.service import Coordinator
from farm.domain.messages import (
    ArtifactRules,
    Assignment,
    CacheEntry,
    DockerEntry,
    InputArtifact,
    Limits,
    ServiceEntry,
)
from farm.domain.records import BuildRecord, JobRecord, ref_variables
from farm.domain.secrets import (
    DEFAULT_PROTECTED_REFS,
    ProjectSecrets,
    applicable,
    is_protected_ref,
    masked_values,
)
from farm.domain.statuses import ArtifactKind
from farm.settings import Settings

DEFAULT_IMAGE = "farm/debian:bookworm"
MIN_MASK = 4  # shorter values would mask common words all over the log


def _upstream_artifacts(build: BuildRecord, job: JobRecord) -> list[InputArtifact]:
    """Artifacts of the jobs whose files this job receives (GitLab's needs/dependencies)."""
    spec = job.spec
    pipeline = Coordinator.pipeline_of(build)
    if spec.dependencies is not None:
        sources = list(spec.dependencies)
    elif spec.needs is not None:
        sources = [n.job for n in spec.needs if n.artifacts]
    else:
        sources = list(pipeline.upstream(spec))
    out: list[InputArtifact] = []
    for name in sources:
        upstream = build.job_named(name)
        if upstream is None:
            continue
        for art in upstream.artifacts:
            if art.kind in (ArtifactKind.ARCHIVE, ArtifactKind.DOTENV):
                out.append(
                    InputArtifact(
                        job=name, name=art.name, kind=art.kind, digest=art.digest, size=art.size
                    )
                )
    return out


def job_variables(
    build: BuildRecord, job: JobRecord, settings: Settings, project: ProjectSecrets | None = None
) -> dict[str, str]:
    """Environment of the job, lowest precedence first: predefined < pipeline/job YAML <
    the project's secrets that apply to the build's ref < submitted variables < submitted
    secrets (GitLab's order: what the trigger says wins over the project's settings)."""
    patterns = project.protected_refs if project is not None else DEFAULT_PROTECTED_REFS
    project_dir = f"/builds/{build.project}"
    ref = build.ref
    # A ref is protected in the project's own repository, not in a namesake's.
    foreign = project is not None and project.repo is not None and not project.trusts(build.repo)
    protected = is_protected_ref(ref, patterns) and not foreign
    predefined = {
        "CI": "true",
        "GITLAB_CI": "true",
        "FARM": "true",
        "CI_SERVER_NAME": "farm",
        "CI_API_V4_URL": settings.resolved_api_url + "/api/v1",
        "CI_COMMIT_SHA": build.commit,
        "CI_COMMIT_SHORT_SHA": build.commit[:8],
        **ref_variables(build.ref_kind, ref),  # CI_COMMIT_REF_NAME, _BRANCH or _TAG
        "CI_COMMIT_REF_PROTECTED": "true" if protected else "false",
        "CI_DEFAULT_BRANCH": build.default_branch,
        "CI_JOB_ID": str(job.id),
        "CI_JOB_NAME": job.name,
        "CI_JOB_NAME_SLUG": "".join(c if c.isalnum() else "-" for c in job.name.lower())[:63],
        "CI_JOB_STAGE": job.stage,
        "CI_JOB_ATTEMPT": str(job.attempt),
        "CI_PIPELINE_ID": str(build.id),
        "CI_PIPELINE_IID": str(build.id),
        "CI_PIPELINE_SOURCE": build.source,
        "CI_PROJECT_DIR": project_dir,
        "CI_BUILDS_DIR": "/builds",
        "CI_PROJECT_NAME": build.project,
        "CI_PROJECT_PATH": build.project,
        "CI_REPOSITORY_URL": build.repo,
        "CI_RUNNER_DESCRIPTION": job.worker or "",
    }
    if job.spec.node_index is not None:
        predefined["CI_NODE_INDEX"] = str(job.spec.node_index)
        predefined["CI_NODE_TOTAL"] = str(job.spec.node_total or 1)
    applied = applicable(project, ref, repo=build.repo) if project is not None else {}
    from_project = {name: s.value for name, s in applied.items()}
    return {**predefined, **job.spec.variables, **from_project, **build.variables, **build.secrets}


def assignment(
    build: BuildRecord, job: JobRecord, settings: Settings, project: ProjectSecrets | None = None
) -> Assignment:
    """What a worker gets back from a successful claim.

    ``project``: the build's project's secrets and protected refs (None: it has none).
    """
    spec = job.spec
    env = job_variables(build, job, settings, project)
    masks = {v for v in build.secrets.values() if len(v) >= MIN_MASK}
    if project is not None:  # only the masked ones the job really receives
        masks |= masked_values(applicable(project, build.ref, repo=build.repo), env)
    return Assignment(
        job_id=job.id,
        attempt=job.attempt,
        build_id=build.id,
        name=job.name,
        stage=job.stage,
        project=build.project,
        project_dir=f"/builds/{build.project}",
        image=spec.image or DEFAULT_IMAGE,
        image_entrypoint=list(spec.image_entrypoint) if spec.image_entrypoint else None,
        image_docker=DockerEntry.of(spec.image_docker),
        image_pull_policy=list(spec.image_pull_policy),
        before_script=list(spec.before_script),
        script=list(spec.script),
        after_script=list(spec.after_script),
        variables=env,
        snapshot_digest=build.snapshot_digest,
        inputs=_upstream_artifacts(build, job),
        timeout=min(spec.timeout or settings.job_timeout, settings.job_timeout),
        artifacts=ArtifactRules.of(spec.artifacts) if spec.artifacts is not None else None,
        cache=[CacheEntry.of(c) for c in spec.cache],
        services=[ServiceEntry.of(s) for s in spec.services],
        coverage=spec.coverage,
        # Values the worker masks in the log before it leaves the worker.
        masks=sorted(masks, key=lambda v: (-len(v), v)),
        limits=Limits(memory=settings.job_memory, cpus=settings.job_cpus, pids=settings.job_pids),
    )
