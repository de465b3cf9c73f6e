"""The pipeline loader: GitLab-CI-compatible YAML text in, validated and expanded model out.

Pure: the only I/O is calling ``context.read`` for ``include:local`` files. What a pipeline
may expand to is bounded by ``context.limits`` (:class:`PipelineLimits`).
"""

from __future__ import annotations

from farm.domain.specs import Pipeline, PipelineContext, PipelineLimits
from farm.pipeline.explain import PIPELINE_FILES, explain, find_pipeline_file
from farm.pipeline.loader import lint, load_pipeline

__all__ = [
    "PIPELINE_FILES",
    "Pipeline",
    "PipelineContext",
    "PipelineLimits",
    "explain",
    "find_pipeline_file",
    "lint",
    "load_pipeline",
]
