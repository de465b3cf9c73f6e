"""The words farm uses for states, reasons and kinds: one ``StrEnum`` each.

They are the API's status words too (``created``, ``pending``, ``running``, ``success``,
``failed``, ``canceled``, ``skipped``, ``manual``), so a member compares equal to its
string and serialises as it: ``JobStatus.SUCCESS == "success"``.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """Status words of a job, as the API shows them."""

    CREATED = "created"  # waiting for its upstream jobs
    PENDING = "pending"  # queued for a worker
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELED = "canceled"
    SKIPPED = "skipped"
    MANUAL = "manual"  # waits for a person to play it


class BuildStatus(StrEnum):
    """Status words of a build."""

    CREATED = "created"
    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELED = "canceled"
    MANUAL = "manual"  # blocked on a manual job that is not allowed to fail


class FailureReason(StrEnum):
    """Why an attempt did not end with a clean exit 0 (a job's ``reason``)."""

    SCRIPT_FAILURE = "script_failure"  # the script exited non-zero
    TIMEOUT = "timeout"
    CANCELED = "canceled"
    OOM = "oom"
    IMAGE_NOT_FOUND = "image_not_found"
    EXECUTOR_ERROR = "executor_error"  # the container runtime failed
    WORKER_ERROR = "worker_error"  # the worker itself failed around the job
    WORKER_LOST = "worker_lost"  # no heartbeat within the lease, retries used up


class SkipReason(StrEnum):
    """Why a job was skipped; ``upstream_failed`` propagates failure down needs chains."""

    UPSTREAM_FAILED = "upstream_failed"
    NOT_NEEDED = "not_needed"  # an on_failure job when nothing failed


class ArtifactKind(StrEnum):
    """What an artifact row holds."""

    ARCHIVE = "archive"  # a job's artifacts:paths tarball
    DOTENV = "dotenv"  # artifacts:reports:dotenv
    DELIVERABLE = "deliverable"  # the build's deliverable manifest
    PROVENANCE = "provenance"  # the signed SLSA statement


FINAL_JOB = frozenset({JobStatus.SUCCESS, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.SKIPPED})
ACTIVE_JOB = frozenset({JobStatus.PENDING, JobStatus.RUNNING})
FINAL_BUILD = frozenset({BuildStatus.SUCCESS, BuildStatus.FAILED, BuildStatus.CANCELED})
ACTIVE_BUILD = frozenset({BuildStatus.CREATED, BuildStatus.PENDING, BuildStatus.RUNNING})
# A build in one of these never becomes releasable.
RED_BUILD = frozenset({BuildStatus.FAILED, BuildStatus.CANCELED})
# What people read for a build status where it differs from the word (GitLab's UI says
# "blocked" for a pipeline whose status is ``manual``: it waits at a manual gate).
BUILD_STATUS_TEXT: dict[str, str] = {BuildStatus.MANUAL: "blocked"}


def build_status_text(status: str) -> str:
    """The word shown to people for a build ``status`` ("blocked" for ``manual``)."""
    return BUILD_STATUS_TEXT.get(status, status)
