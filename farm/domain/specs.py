"""The validated, expanded pipeline: what the loader produces and the coordinator runs.

Pure data. Every job here is concrete: ``extends``, ``default``, anchors,
``!reference``, ``include``, ``parallel``/``matrix`` and ``rules`` have already
been applied, and ``needs`` name concrete (expanded) jobs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

When = Literal["on_success", "on_failure", "always", "manual", "delayed"]
DEFAULT_STAGES: tuple[str, ...] = (".pre", "build", "test", "deploy", ".post")


@dataclass(frozen=True)
class Need:
    """One entry of ``needs``: a concrete upstream job."""

    job: str
    artifacts: bool = True
    optional: bool = False


@dataclass(frozen=True)
class ArtifactSpec:
    """``artifacts:`` of a job."""

    paths: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    untracked: bool = False
    when: Literal["on_success", "on_failure", "always"] = "on_success"
    expire_in: int | None = None  # seconds; None = never
    name: str | None = None
    dotenv: tuple[str, ...] = ()  # reports: dotenv files
    junit: tuple[str, ...] = ()  # reports: junit files (globs)


@dataclass(frozen=True)
class CacheSpec:
    """One ``cache:`` entry; ``key`` is final unless ``key_files`` asks for content hashing."""

    key: str = "default"
    key_files: tuple[str, ...] = ()
    key_prefix: str | None = None
    paths: tuple[str, ...] = ()
    untracked: bool = False
    policy: Literal["pull", "push", "pull-push"] = "pull-push"
    when: Literal["on_success", "on_failure", "always"] = "on_success"
    fallback_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class DockerOptions:
    """``image:docker`` / ``services:docker``: how the Docker executor starts the container.

    ``user`` is the container's user (``docker run --user``); ``platform`` the image
    platform the job expects (``linux/arm64``), checked against the local image since no
    image is pulled here.
    """

    platform: str | None = None
    user: str | None = None


@dataclass(frozen=True)
class ServiceSpec:
    """A sidecar container sharing the job container's network namespace."""

    name: str
    alias: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    command: tuple[str, ...] | None = None
    variables: dict[str, str] = field(default_factory=dict)
    docker: DockerOptions | None = None
    pull_policy: tuple[str, ...] = ()  # as written; no registry is reachable here


@dataclass(frozen=True)
class RetrySpec:
    """``retry:``; ``max`` extra attempts when the failure matches ``when``/``exit_codes``."""

    max: int = 0
    when: tuple[str, ...] = ("always",)
    exit_codes: tuple[int, ...] = ()


@dataclass(frozen=True)
class EnvironmentSpec:
    """``environment:`` of a deployment job."""

    name: str
    url: str | None = None
    action: str = "start"
    deployment_tier: str | None = None


@dataclass(frozen=True)
class JobSpec:
    """One concrete job, ready to be persisted and dispatched."""

    name: str
    stage: str
    script: tuple[str, ...]
    image: str | None = None
    image_entrypoint: tuple[str, ...] | None = None
    before_script: tuple[str, ...] = ()
    after_script: tuple[str, ...] = ()
    variables: dict[str, str] = field(default_factory=dict)
    # None: stage ordering (every job of earlier stages); a tuple: exactly these.
    needs: tuple[Need, ...] | None = None
    # None: artifacts of every upstream job; a tuple: only these jobs' artifacts.
    dependencies: tuple[str, ...] | None = None
    when: When = "on_success"
    start_in: int | None = None  # seconds, for when: delayed
    allow_failure: bool = False
    allow_failure_exit_codes: tuple[int, ...] = ()
    timeout: int | None = None  # seconds
    retry: RetrySpec = field(default_factory=RetrySpec)
    tags: tuple[str, ...] = ()
    interruptible: bool = False
    resource_group: str | None = None
    environment: EnvironmentSpec | None = None
    coverage: str | None = None
    artifacts: ArtifactSpec | None = None
    cache: tuple[CacheSpec, ...] = ()
    services: tuple[ServiceSpec, ...] = ()
    node_index: int | None = None  # CI_NODE_INDEX for parallel jobs (1-based)
    node_total: int | None = None
    matrix: dict[str, str] = field(default_factory=dict)
    line: int = 0  # where the job is defined in its file, for messages
    image_docker: DockerOptions | None = None  # image:docker (user, platform)
    image_pull_policy: tuple[str, ...] = ()  # image:pull_policy as written

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form, for persistence (sequences as lists, as JSON reads back)."""
        plain: dict[str, Any] = _plain(self)
        return plain

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        """Inverse of :meth:`to_dict`."""
        d = dict(data)
        for key in ("script", "before_script", "after_script", "tags", "allow_failure_exit_codes"):
            d[key] = tuple(d.get(key) or ())
        if d.get("image_entrypoint") is not None:
            d["image_entrypoint"] = tuple(d["image_entrypoint"])
        if d.get("image_docker") is not None:
            d["image_docker"] = DockerOptions(**d["image_docker"])
        d["image_pull_policy"] = tuple(d.get("image_pull_policy") or ())
        if d.get("needs") is not None:
            d["needs"] = tuple(Need(**n) for n in d["needs"])
        if d.get("dependencies") is not None:
            d["dependencies"] = tuple(d["dependencies"])
        r = d.get("retry") or {}
        d["retry"] = RetrySpec(
            max=r.get("max", 0),
            when=tuple(r.get("when", ("always",))),
            exit_codes=tuple(r.get("exit_codes", ())),
        )
        if d.get("environment") is not None:
            d["environment"] = EnvironmentSpec(**d["environment"])
        if d.get("artifacts") is not None:
            a = dict(d["artifacts"])
            for key in ("paths", "exclude", "dotenv", "junit"):
                a[key] = tuple(a.get(key) or ())
            d["artifacts"] = ArtifactSpec(**a)
        d["cache"] = tuple(
            CacheSpec(
                **{
                    **c,
                    "key_files": tuple(c.get("key_files") or ()),
                    "paths": tuple(c.get("paths") or ()),
                    "fallback_keys": tuple(c.get("fallback_keys") or ()),
                }
            )
            for c in d.get("cache") or ()
        )
        d["services"] = tuple(
            ServiceSpec(
                name=s["name"],
                alias=tuple(s.get("alias") or ()),
                entrypoint=tuple(s["entrypoint"]) if s.get("entrypoint") is not None else None,
                command=tuple(s["command"]) if s.get("command") is not None else None,
                variables=dict(s.get("variables") or {}),
                docker=DockerOptions(**s["docker"]) if s.get("docker") is not None else None,
                pull_policy=tuple(s.get("pull_policy") or ()),
            )
            for s in d.get("services") or ()
        )
        return cls(**d)


@dataclass(frozen=True)
class Notice:
    """A keyword the pipeline uses that farm accepts but cannot apply (a lint warning)."""

    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: warning: {self.message}"


@dataclass(frozen=True)
class Pipeline:
    """A loaded pipeline: ordered stages and concrete jobs in definition order."""

    stages: tuple[str, ...]
    jobs: tuple[JobSpec, ...]
    variables: dict[str, str] = field(default_factory=dict)
    warnings: tuple[Notice, ...] = ()  # accepted but not applied here; see GITLAB_COMPAT.md

    def job(self, name: str) -> JobSpec:
        """The job called ``name`` (KeyError if none)."""
        for job in self.jobs:
            if job.name == name:
                return job
        raise KeyError(name)

    def upstream(self, job: JobSpec) -> tuple[str, ...]:
        """Names of the jobs ``job`` waits for: its needs, else every earlier-stage job."""
        if job.needs is not None:
            return tuple(n.job for n in job.needs)
        rank = self.stages.index(job.stage)
        return tuple(j.name for j in self.jobs if self.stages.index(j.stage) < rank)


@dataclass(frozen=True)
class PipelineLimits:
    """What one pipeline may expand to; the loader refuses more *while* loading.

    Each field is the farm setting ``FARM_PIPELINE_<FIELD>`` (e.g. ``max_jobs`` is
    ``FARM_PIPELINE_MAX_JOBS``); the defaults here are the settings' defaults.
    """

    max_aliases: int = 20_000  # YAML aliases followed, counting aliases inside aliases
    max_nodes: int = 200_000  # YAML nodes once aliases are followed; 2x: keys merges copy
    max_script_lines: int = 100_000  # before_script + script + after_script lines, all jobs
    max_jobs: int = 2_000  # jobs the pipeline creates
    max_job_bytes: int = 1024**2  # one job's stored spec (JSON)
    max_bytes: int = 16 * 1024**2  # all jobs' stored specs; also all YAML files read
    max_includes: int = 150  # files merged by include:


@dataclass(frozen=True)
class PipelineContext:
    """What the loader may know about the commit; all of it is given, nothing is fetched.

    ``files`` lists every path in the commit's tree (for ``include: local`` wildcards and
    ``rules: exists``); ``read`` returns a file's text or None; ``changed`` lists paths
    changed against the parent commit, or None when unknown (``rules: changes`` is then true,
    as GitLab does for new branches). ``limits`` bound what the pipeline may expand to.
    ``read_component`` reads a path relative to the component catalog directory
    ``component_catalog`` (the setting ``FARM_COMPONENT_CATALOG``) for ``include:component``;
    None when no catalog is configured.
    """

    variables: dict[str, str] = field(default_factory=dict)
    files: tuple[str, ...] = ()
    read: Any = None  # Callable[[str], str | None]
    changed: tuple[str, ...] | None = None
    limits: PipelineLimits = field(default_factory=PipelineLimits)
    component_catalog: str | None = None  # shown in messages
    read_component: Any = None  # Callable[[str], str | None], relative to the catalog


def _plain(value: Any) -> Any:
    """``value`` with dataclasses as dicts and tuples as lists (new containers; the
    leaves, strings and numbers, are shared rather than copied).

    ``dataclasses.asdict`` deep-copies every leaf: it took 14 % of a 10,000-job submit's
    time (issue 10); specs are frozen and their leaves are strings, numbers and None.
    """
    kind = type(value)
    if kind in _LEAVES:
        return value
    if kind is tuple or kind is list:
        return [_plain(v) for v in value]
    if kind is dict:
        return {k: _plain(v) for k, v in value.items()}
    names = _FIELDS.get(kind)
    if names is None and dataclasses.is_dataclass(kind):
        names = _FIELDS[kind] = tuple(f.name for f in dataclasses.fields(kind))
    if names is not None:
        return {name: _plain(getattr(value, name)) for name in names}
    return value


_LEAVES = frozenset({str, int, float, bool, type(None)})
_FIELDS: dict[type, tuple[str, ...]] = {}
