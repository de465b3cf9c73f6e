"""Release rules: which build may become which version, and when a release may go.

A release binds ``(project, version)`` to one green build and its deliverable, for good:

- **immutable**: a version is never re-pointed (409); re-posting the same build under
  the same version is an idempotent no-op, so a retried request does not fail;
- **only green builds**: a build still running is a 409 (retry later), a failed or
  canceled one a 422 (it never will be releasable). A build blocked at a manual gate
  (status ``manual``, GitLab's "blocked") is green so far and has its deliverable: it
  may be released (the release pins that deliverable; playing the gate later writes the
  build a new one, never the release's);
- **deletable only when unreferenced**: a release is *referenced* while it is the
  latest release of its project (what "current" resolves to) or while a rollout
  points at it. A referenced release answers 409 on DELETE.

Pure: the store asks these functions and applies their answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from farm.domain.statuses import RED_BUILD, BuildStatus
from farm.errors import Conflict, InvalidRequest

# A blocked build (``manual``) has done all it does by itself: its deliverable stands.
RELEASABLE_BUILD = frozenset({BuildStatus.SUCCESS, BuildStatus.MANUAL})
VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")


def check_version(version: str) -> None:
    """InvalidRequest unless ``version`` is a usable version string."""
    if not VERSION_RE.fullmatch(version):
        raise InvalidRequest(
            f"invalid version {version!r}: use letters, digits and . _ + - (max 128)"
        )


def check_releasable(
    build_id: int,
    status: str,
    deliverable_digest: str | None,
    build_project: str,
    project: str | None = None,
) -> None:
    """Raise why a build cannot be released as (``project``, …); nothing when it can."""
    if project is not None and project != build_project:
        raise InvalidRequest(
            f"build {build_id} belongs to project {build_project!r}, not {project!r}"
        )
    if status in RED_BUILD or status == "skipped":
        raise InvalidRequest(
            f"build {build_id} is {status}: only a successful build can be released"
        )
    if status not in RELEASABLE_BUILD or not deliverable_digest:
        raise Conflict(
            f"build {build_id} is {status}, not finished: "
            "only a successful build can be released (wait for it)"
        )


def repost_conflict(project: str, version: str, existing_build: int, build_id: int) -> None:
    """Conflict when a version already names another build (versions are immutable)."""
    if existing_build != build_id:
        raise Conflict(
            f"release {project} {version} already exists (build {existing_build}); "
            "versions are immutable: choose a new version"
        )


def deletion_blockers(project: str, is_latest: bool, rollouts: Iterable[int] = ()) -> list[str]:
    """Why a release cannot be deleted (empty: it can).

    ``rollouts`` are the ids of rollouts that still point at the release.
    """
    reasons: list[str] = []
    if is_latest:
        reasons.append(f"it is the latest release of {project}")
    reasons.extend(f"rollout {rid} references it" for rid in rollouts)
    return reasons
