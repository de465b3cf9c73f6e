"""What a GitHub or GitLab webhook asks to build: its payload, checked and reduced.

Pure parsing (no I/O): a push, tag push or pull/merge request payload becomes a
:class:`Target` (clone URL, ref, commit, source, origin) or the reason it builds
nothing. Every string that reaches git's command line is checked here: the clone URL's
scheme (never a local path), the ref (``git check-ref-format`` rules, no option-like
names) and the commit (a full SHA).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from farm.domain.records import BuildOrigin, PipelineSource
from farm.errors import InvalidRequest
from farm.githost.status import GITHUB, GITLAB, gitlab_base_url

__all__ = ["Target", "check_clone_url", "github_target", "gitlab_target"]

ZERO_SHA = re.compile(r"0+")
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
# What git refuses in a ref name (git check-ref-format), plus anything git could take
# for an option: a webhook's ref reaches git's command line.
_BAD_REF = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//|^-|^/|/$|\.lock$|\.$")
_MAX_URL = 2048


@dataclass(frozen=True)
class Target:
    """A commit a delivery asks to build."""

    repo: str
    ref: str
    commit: str
    source: str  # CI_PIPELINE_SOURCE
    origin: BuildOrigin | None = None  # where its commit status goes (None: nowhere)


def check_clone_url(url: str, allowed: list[str]) -> str:
    """``url`` when it is a URL of an allowed scheme with a host; InvalidRequest otherwise.

    Never a local path, whatever the payload says: a webhook must not make the farm
    build (or leak, through a build's snapshot) a repository on the coordinator's disk.
    """
    shown = url if len(url) <= 200 else url[:199] + "…"
    schemes = [s.lower() for s in allowed]
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        parts, host = None, None
    ok = (
        parts is not None
        and len(url) <= _MAX_URL
        and url.isprintable()
        and " " not in url
        and parts.scheme.lower() in schemes
        and (bool(host) or parts.scheme.lower() == "file")
    )
    if not ok:
        raise InvalidRequest(
            f"clone URL {shown!r} is refused: webhooks build only {', '.join(schemes)} URLs "
            "(never a local path; FARM_HOOK_ALLOWED_URL_SCHEMES)"
        )
    return url


def _check_ref(ref: str) -> str:
    if not ref or len(ref) > 255 or _BAD_REF.search(ref):
        raise InvalidRequest(f"ref {ref[:100]!r} is not a valid git ref name")
    return ref


def _check_sha(sha: str) -> str:
    if not _SHA.fullmatch(sha):
        raise InvalidRequest(f"commit {sha[:100]!r} is not a full hexadecimal commit id")
    return sha


def _branch_or_tag(ref: str) -> str | None:
    """A pushed ref as builds name it (branch short, tag ``refs/tags/x``); None: not built."""
    if ref.startswith("refs/heads/"):
        return _check_ref(ref.removeprefix("refs/heads/"))
    if ref.startswith("refs/tags/"):
        _check_ref(ref.removeprefix("refs/tags/"))
        return ref
    return None


class _Lax(BaseModel):
    model_config = ConfigDict(extra="ignore")


M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], payload: dict[str, Any], event: str) -> M:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidRequest(f"{event} payload: {where}: {first['msg']}") from None


# --- submitting, once per delivery -------------------------------------------------------


class _GhRepo(_Lax):
    clone_url: str
    full_name: str | None = Field(default=None, max_length=255)


class _GhPush(_Lax):
    ref: str
    after: str
    deleted: bool = False
    repository: _GhRepo


class _GhHead(_Lax):
    ref: str
    sha: str
    repo: _GhRepo | None = None


class _GhPull(_Lax):
    number: int
    head: _GhHead


class _GhPullEvent(_Lax):
    action: str
    pull_request: _GhPull
    repository: _GhRepo | None = None  # the base repository: where statuses show


def _gh_origin(repo: _GhRepo | None, api_url: str) -> BuildOrigin | None:
    """Where a GitHub build's commit status goes: the hook's repository."""
    if repo is None or not repo.full_name:
        return None
    return BuildOrigin(GITHUB, api_url, repo.full_name)


_GH_PR_ACTIONS = {"opened", "synchronize", "reopened"}


def github_target(event: str, payload: dict[str, Any], api_url: str) -> Target | str:
    """What a GitHub delivery builds, or why it builds nothing (statuses: ``api_url``)."""
    if event == "push":
        push = _parse(_GhPush, payload, event)
        if push.deleted or ZERO_SHA.fullmatch(push.after):
            return f"{push.ref} was deleted: nothing to build"
        ref = _branch_or_tag(push.ref)
        if ref is None:
            return f"{push.ref} is neither a branch nor a tag"
        origin = _gh_origin(push.repository, api_url)
        sha = _check_sha(push.after)
        return Target(push.repository.clone_url, ref, sha, PipelineSource.PUSH, origin)
    if event == "pull_request":
        pr = _parse(_GhPullEvent, payload, event)
        if pr.action not in _GH_PR_ACTIONS:
            return f"pull request action {pr.action[:50]!r} builds nothing"
        head = pr.pull_request.head
        if head.repo is None:
            raise InvalidRequest("pull_request payload: the head repository no longer exists")
        ref = _check_ref(head.ref)
        origin = _gh_origin(pr.repository, api_url)
        sha = _check_sha(head.sha)
        return Target(head.repo.clone_url, ref, sha, PipelineSource.MERGE_REQUEST_EVENT, origin)
    return f"event {event[:50]!r} is not built (push and pull_request are)"


class _GlProject(_Lax):
    git_http_url: str
    id: int | None = None
    path_with_namespace: str | None = Field(default=None, max_length=255)
    web_url: str | None = Field(default=None, max_length=_MAX_URL)


def _gl_origin(project: _GlProject, gitlab_url: str | None) -> BuildOrigin | None:
    """Where a GitLab build's commit status goes: the hook's project, on ``gitlab_url``
    (FARM_GITLAB_URL) or else the GitLab its ``web_url`` names."""
    base = gitlab_url or gitlab_base_url(project.web_url, project.path_with_namespace)
    name = str(project.id) if project.id is not None else project.path_with_namespace
    if not base or not name:
        return None
    return BuildOrigin(GITLAB, base.rstrip("/"), name)


class _GlPush(_Lax):
    ref: str
    after: str
    checkout_sha: str | None = None
    project: _GlProject


class _GlCommit(_Lax):
    id: str


class _GlMergeAttrs(_Lax):
    action: str | None = None
    source_branch: str
    last_commit: _GlCommit
    source: _GlProject | None = None
    oldrev: str | None = None


class _GlMerge(_Lax):
    object_attributes: _GlMergeAttrs
    project: _GlProject


def gitlab_target(event: str, payload: dict[str, Any], gitlab_url: str | None) -> Target | str:
    """What a GitLab delivery builds, or why it builds nothing."""
    if event in ("Push Hook", "Tag Push Hook"):
        push = _parse(_GlPush, payload, event)
        if ZERO_SHA.fullmatch(push.after) or not push.checkout_sha:
            return f"{push.ref} was deleted: nothing to build"
        ref = _branch_or_tag(push.ref)
        if ref is None:
            return f"{push.ref} is neither a branch nor a tag"
        origin = _gl_origin(push.project, gitlab_url)
        sha = _check_sha(push.checkout_sha)
        return Target(push.project.git_http_url, ref, sha, PipelineSource.PUSH, origin)
    if event == "Merge Request Hook":
        merge = _parse(_GlMerge, payload, event)
        mr = merge.object_attributes
        new_commits = mr.action == "update" and bool(mr.oldrev)
        if mr.action not in ("open", "reopen") and not new_commits:
            return f"merge request action {str(mr.action)[:50]!r} builds nothing"
        url = (mr.source or merge.project).git_http_url
        ref = _check_ref(mr.source_branch)
        origin = _gl_origin(merge.project, gitlab_url)  # the target project shows it
        sha = _check_sha(mr.last_commit.id)
        return Target(url, ref, sha, PipelineSource.MERGE_REQUEST_EVENT, origin)
    return f"event {event[:50]!r} is not built (Push, Tag Push and Merge Request Hooks are)"
