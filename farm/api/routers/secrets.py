"""``/api/v1/projects/{project}/secrets``, ``.../repo`` and ``.../protected-refs``: a
project's secret variables, the repository they are bound to and its protected refs
(admin scope only).

A project's secrets reach only builds of its bound repository (a build's project is just
its repository's base name: see :mod:`farm.domain.secrets`), so a project is bound
(``PUT .../repo``, or ``repo`` with its first secret) before it can keep any.

Values go in and never come out: every answer lists names, flags and timestamps, and the
value reaches nothing but a claiming worker's assignment (``farm.coordinator.assignment``)
and, masked, its log.  ``project`` may hold slashes (``group/name``): the last path
segments are the resource, as in the cache routes.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from farm.api.auth import requires
from farm.api.deps import StoreDep
from farm.api.errors import errors
from farm.api.limits import Line
from farm.api.schemas import RepoText
from farm.domain.auth import Scope
from farm.domain.secrets import (
    MAX_PATTERNS,
    MAX_VALUE_LENGTH,
    MIN_MASKED_LENGTH,
    SecretInfo,
    check_name,
)
from farm.errors import NotFound

router = APIRouter(
    prefix="/api/v1/projects",
    tags=["secrets"],
    dependencies=[requires(Scope.ADMIN)],
    # A project name with a line break matches no route (a path segment never holds one).
    responses=errors(404, s404="No such route: a project name cannot hold a line break"),
)


class SecretIn(BaseModel):
    """A secret's value and flags (the name is in the path)."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    value: str = Field(
        max_length=MAX_VALUE_LENGTH,
        description="the value; stored encrypted, never served back",
        json_schema_extra={"writeOnly": True},
    )
    protected: bool = Field(default=False, description="only builds of protected refs receive it")
    masked: bool = Field(
        default=True,
        description=f"hidden in job logs (needs at least {MIN_MASKED_LENGTH} characters)",
    )
    repo: RepoText | None = Field(
        default=None,
        description="bind the project to this repository if it is bound to none yet "
        "(409 if it is bound to another)",
    )


class SecretOut(BaseModel):
    """A secret as the API shows it: never its value."""

    project: str
    name: str
    protected: bool
    masked: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, info: SecretInfo) -> SecretOut:
        """From a store entry (which has no value either)."""
        return cls(
            project=info.project,
            name=info.name,
            protected=info.protected,
            masked=info.masked,
            created_at=info.created_at,
            updated_at=info.updated_at,
        )


class ProjectSecretsOut(BaseModel):
    """A project's secrets (no values) and the repository whose builds receive them."""

    project: str
    repo: str | None = Field(description="the bound repository; null: no build gets them")
    secrets: list[SecretOut]


class RepoIn(BaseModel):
    """The repository a project's secrets are bound to."""

    model_config = ConfigDict(extra="forbid")

    repo: RepoText = Field(
        description="git URL or absolute path on the coordinator host, as builds give it"
    )


class RepoOut(BaseModel):
    """Which repository's builds receive a project's secrets."""

    project: str
    repo: str | None = Field(description="null: bound to none, no build gets its secrets")


class ProtectedRefsIn(BaseModel):
    """A project's protected ref patterns (fnmatch: ``main``, ``release/*``, ``v*``)."""

    model_config = ConfigDict(extra="forbid")

    patterns: list[Line] = Field(max_length=MAX_PATTERNS)


class ProtectedRefsOut(BaseModel):
    """Which branches and tags of a project receive its protected secrets."""

    project: str
    patterns: list[str]
    default: bool = Field(description="true: the project set none, main and master apply")


@router.get("/{project:path}/secrets", response_model=ProjectSecretsOut)
def list_secrets(project: Line, store: StoreDep) -> ProjectSecretsOut:
    """The project's bound repository and its secrets by name, with their flags (no values)."""
    return ProjectSecretsOut(
        project=project,
        repo=store.project_repo(project),
        secrets=[SecretOut.of(i) for i in store.project_secret_infos(project)],
    )


@router.put(
    "/{project:path}/secrets/{name}",
    status_code=200,
    response_model=SecretOut,
    responses={
        201: {"model": SecretOut, "description": "The secret was created"},
        **errors(
            409,
            422,
            s409="repo is not the repository the project is bound to",
            s422="Not a variable name, a masked value shorter than "
            f"{MIN_MASKED_LENGTH} characters, or a project bound to no repository",
        ),
    },
)
def put_secret(
    project: Line, name: Line, body: SecretIn, store: StoreDep, response: Response
) -> SecretOut:
    """Create or replace a secret (201 when new, 200 when replaced).

    The project must be bound to its repository (422 otherwise), or ``repo`` binds it.
    """
    info, created = store.put_project_secret(
        project,
        check_name(name),
        body.value,
        protected=body.protected,
        masked=body.masked,
        repo=body.repo,
    )
    response.status_code = 201 if created else 200
    return SecretOut.of(info)


@router.delete(
    "/{project:path}/secrets/{name}",
    status_code=204,
    response_class=Response,
    responses=errors(404, s404="The project has no such secret"),
)
def delete_secret(project: Line, name: Line, store: StoreDep) -> Response:
    """Remove a secret; builds claimed from now on no longer receive it."""
    if not store.delete_project_secret(project, name):
        raise NotFound(f"project {project!r} has no secret {name[:255]!r}")
    return Response(status_code=204)


def _refs(project: str, store: StoreDep) -> ProtectedRefsOut:
    patterns, configured = store.protected_refs(project)
    return ProtectedRefsOut(project=project, patterns=list(patterns), default=not configured)


@router.get("/{project:path}/protected-refs", response_model=ProtectedRefsOut)
def get_protected_refs(project: Line, store: StoreDep) -> ProtectedRefsOut:
    """The project's protected ref patterns (main and master until it sets its own)."""
    return _refs(project, store)


@router.put(
    "/{project:path}/protected-refs",
    response_model=ProtectedRefsOut,
    responses=errors(422, s422="A pattern is empty, too long or holds control characters"),
)
def put_protected_refs(project: Line, body: ProtectedRefsIn, store: StoreDep) -> ProtectedRefsOut:
    """Replace the project's patterns (an empty list protects no ref at all)."""
    store.set_protected_refs(project, body.patterns)
    return _refs(project, store)


@router.delete("/{project:path}/protected-refs", response_model=ProtectedRefsOut)
def reset_protected_refs(project: Line, store: StoreDep) -> ProtectedRefsOut:
    """Forget the project's patterns: main and master are protected again."""
    store.set_protected_refs(project, None)
    return _refs(project, store)


@router.get("/{project:path}/repo", response_model=RepoOut)
def get_repo(project: Line, store: StoreDep) -> RepoOut:
    """The repository whose builds receive the project's secrets."""
    return RepoOut(project=project, repo=store.project_repo(project))


@router.put(
    "/{project:path}/repo",
    response_model=RepoOut,
    responses=errors(422, s422="Not a git URL or an absolute path, or a URL with a password"),
)
def put_repo(project: Line, body: RepoIn, store: StoreDep) -> RepoOut:
    """Bind the project's secrets to a repository: from now on only builds whose ``repo``
    is this one (same URL or path, up to spelling) receive them."""
    return RepoOut(project=project, repo=store.bind_project_repo(project, body.repo))
