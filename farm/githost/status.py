"""Commit statuses: a build's state as GitHub's or GitLab's commit status request.

PURE: values in, a :class:`StatusRequest` (URL, headers, JSON body) out. The token is
added to the headers by the caller that holds it (a worker, from its own settings): a
:class:`CommitStatus` is what travels in a Celery message, and it never carries a token.

State words:

=========  ==========================  ===========================
farm       GitHub (statuses API)       GitLab (commit status API)
=========  ==========================  ===========================
created    pending                     pending
pending    pending                     pending
running    pending ("running")         running
success    success                     success
failed     failure                     failed
canceled   error (GitHub has none)     canceled
=========  ==========================  ===========================

Ordering: each status carries ``seq``, a per-build number taken *after* the transition it
reports (see :mod:`farm.api.commit_status`); the deliverer skips a status whose ``seq`` is
not above the last one delivered for the same build and context.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote, urlsplit

__all__ = [
    "GITHUB",
    "GITLAB",
    "HOSTS",
    "STATUS_TASK",
    "CommitStatus",
    "StatusRequest",
    "build_url",
    "describe",
    "github_state",
    "gitlab_base_url",
    "gitlab_state",
    "status_request",
]

GITHUB = "github"
GITLAB = "gitlab"
HOSTS = (GITHUB, GITLAB)
STATUS_TASK = "farm.commit_status"  # the Celery task's name (farm/worker/commit_status.py)

_GITHUB_STATES = {
    "created": "pending",
    "pending": "pending",
    "running": "pending",
    "success": "success",
    "failed": "failure",
    "canceled": "error",
}
_GITLAB_STATES = {
    "created": "pending",
    "pending": "pending",
    "running": "running",
    "success": "success",
    "failed": "failed",
    "canceled": "canceled",
}
_DESCRIPTIONS = {
    "created": "is pending",
    "pending": "is pending",
    "running": "is running",
    "success": "passed",
    "failed": "failed",
    "canceled": "was canceled",
}
_GH_REPO = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_MAX_DESCRIPTION = 140  # GitHub's limit


@dataclass(frozen=True)
class CommitStatus:
    """One status of one build, as sent to the deliverer (JSON-safe, token-free)."""

    host: str  # GITHUB or GITLAB
    api_url: str  # https://api.github.com, or a GitLab's base URL
    project: str  # "owner/repo", or a GitLab project id or path_with_namespace
    sha: str
    ref: str  # the build's ref (branch name, or refs/tags/NAME)
    state: str  # the farm's build status word
    build_id: int
    seq: int  # higher: newer (per build)
    target_url: str
    context: str

    def to_message(self) -> dict[str, Any]:
        """The task's argument."""
        return asdict(self)

    @classmethod
    def from_message(cls, data: dict[str, Any]) -> CommitStatus:
        """Back from the task's argument; ValueError if it is not one."""
        try:
            status = cls(**data)
        except TypeError as exc:
            raise ValueError(f"not a commit status message: {exc}") from None
        if status.host not in HOSTS or status.state not in _GITHUB_STATES:
            raise ValueError(f"not a commit status message: {status.host}/{status.state}")
        return status

    @property
    def key(self) -> str:
        """What orders deliveries: one build's statuses under one context."""
        return f"{self.target_url}#{self.context}"

    @property
    def signature(self) -> str:
        """What the host would show: equal signatures need not be posted twice (GitLab
        even refuses a second ``running``)."""
        state = github_state(self.state) if self.host == GITHUB else gitlab_state(self.state)
        return f"{state}:{describe(self.build_id, self.state)}"


@dataclass(frozen=True)
class StatusRequest:
    """A POST to make: ``url``, ``headers`` (with the token) and JSON ``body``."""

    url: str
    headers: dict[str, str]
    body: dict[str, str]


def github_state(state: str) -> str:
    """GitHub's word for a farm build status (canceled: ``error``, GitHub has none)."""
    return _GITHUB_STATES[state]


def gitlab_state(state: str) -> str:
    """GitLab's word for a farm build status."""
    return _GITLAB_STATES[state]


def describe(build_id: int, state: str) -> str:
    """The status's one-line description."""
    return f"farm build #{build_id} {_DESCRIPTIONS[state]}"[:_MAX_DESCRIPTION]


def build_url(farm_url: str, build_id: int) -> str:
    """The build's dashboard page, the status's link."""
    return f"{farm_url.rstrip('/')}/builds/{build_id}"


def status_request(status: CommitStatus, token: str) -> StatusRequest:
    """The host's request for ``status``; ValueError if the status cannot be addressed."""
    if not _SHA.fullmatch(status.sha):
        raise ValueError(f"commit {status.sha[:80]!r} is not a full commit id")
    base = _base(status.api_url)
    description = describe(status.build_id, status.state)
    if status.host == GITHUB:
        if not _GH_REPO.fullmatch(status.project):
            raise ValueError(f"GitHub repository {status.project[:80]!r} is not owner/name")
        return StatusRequest(
            url=f"{base}/repos/{status.project}/statuses/{status.sha}",
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
            },
            body={
                "state": github_state(status.state),
                "target_url": status.target_url,
                "description": description,
                "context": status.context,
            },
        )
    if status.host == GITLAB:
        if not status.project:
            raise ValueError("GitLab project is empty")
        project = quote(status.project, safe="")  # group/sub/name -> group%2Fsub%2Fname
        ref = status.ref.removeprefix("refs/heads/").removeprefix("refs/tags/")
        return StatusRequest(
            url=f"{base}/api/v4/projects/{project}/statuses/{status.sha}",
            headers={"PRIVATE-TOKEN": token},
            body={
                "state": gitlab_state(status.state),
                "name": status.context,
                "target_url": status.target_url,
                "description": description,
                "ref": ref,
            },
        )
    raise ValueError(f"unknown git host {status.host!r}")


def gitlab_base_url(web_url: str | None, path_with_namespace: str | None) -> str | None:
    """A GitLab's base URL from a project's ``web_url`` (``https://h/gitlab/g/p`` with path
    ``g/p`` gives ``https://h/gitlab``, relative URL roots kept); None if it cannot tell."""
    if not web_url or not path_with_namespace:
        return None
    try:
        parts = urlsplit(web_url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    path = parts.path.rstrip("/")
    suffix = "/" + path_with_namespace.strip("/")
    if not path.endswith(suffix):
        return None
    return f"{parts.scheme}://{parts.netloc}{path.removesuffix(suffix)}"


def _base(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"API URL {url[:80]!r} is not an http(s) URL")
    return url.rstrip("/")
