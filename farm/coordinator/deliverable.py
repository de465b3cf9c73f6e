"""The deliverable manifest of a green build: what was built, from what, by whom."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from farm.domain.records import BuildRecord

SCHEMA = "farm.deliverable/v1"


def _ts(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def manifest_dict(build: BuildRecord) -> dict[str, Any]:
    """The manifest as data: commit, pipeline, every job and every artifact."""
    jobs: list[dict[str, Any]] = []
    artifacts: list[dict[str, Any]] = []
    for job in build.jobs:
        arts = [
            {
                "name": a.name,
                "kind": a.kind,
                "digest": a.digest,
                "size": a.size,
                "files": list(a.files),
            }
            for a in job.artifacts
        ]
        jobs.append(
            {
                "name": job.name,
                "stage": job.stage,
                "status": job.status,
                "image": job.spec.image,
                "attempt": job.attempt,
                "worker": job.worker,
                "exit_code": job.exit_code,
                "started_at": _ts(job.started_at),
                "finished_at": _ts(job.finished_at),
                "cached": job.cached_from is not None,  # reused an identical job's result
                "artifacts": arts,
            }
        )
        artifacts.extend({"job": job.name, **a} for a in arts)
    return {
        "schema": SCHEMA,
        "build": build.id,
        "project": build.project,
        "repo": build.repo,
        "ref": build.ref,
        "commit": build.commit,
        "pipeline": {"file": build.pipeline_file, "digest": build.pipeline_digest},
        "source": {"digest": build.snapshot_digest},
        "created_at": _ts(build.created_at),
        "finished_at": _ts(build.finished_at),
        "jobs": jobs,
        "artifacts": artifacts,
    }


def deliverable_manifest(build: BuildRecord) -> bytes:
    """Canonical JSON bytes (sorted keys): the same build always hashes the same."""
    return json.dumps(manifest_dict(build), sort_keys=True, separators=(",", ":")).encode()
