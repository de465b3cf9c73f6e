"""Human-facing views of a loaded pipeline: ``explain`` rows and pipeline file discovery."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from farm.domain.specs import Pipeline

PIPELINE_FILES = (".farm-ci.yml", ".gitlab-ci.yml")


def explain(pipeline: Pipeline) -> list[dict[str, Any]]:
    """One row per job, in definition order: what runs, where, after what."""
    rows: list[dict[str, Any]] = []
    for job in pipeline.jobs:
        rows.append(
            {
                "name": job.name,
                "stage": job.stage,
                "needs": [n.job for n in job.needs] if job.needs is not None else None,
                "image": job.image,
                "when": job.when,
                "allow_failure": job.allow_failure,
                "matrix": dict(job.matrix),
                "upstream": list(pipeline.upstream(job)),
            }
        )
    return rows


def find_pipeline_file(files: Iterable[str]) -> str | None:
    """The pipeline file among repository paths: ``.farm-ci.yml`` wins over ``.gitlab-ci.yml``."""
    present = {f.lstrip("/").removeprefix("./") for f in files}
    for name in PIPELINE_FILES:
        if name in present:
            return name
    return None
