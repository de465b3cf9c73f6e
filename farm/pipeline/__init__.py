"""The pipeline loader: GitLab-CI-compatible YAML text in, validated and expanded model out.

Pure: the only I/O is calling ``context.read`` for ``include:local`` files.
"""

from __future__ import annotations

from farm.pipeline.explain import PIPELINE_FILES, explain, find_pipeline_file
from farm.pipeline.loader import lint, load_pipeline
from farm.pipeline.model import Pipeline, PipelineContext

__all__ = [
    "PIPELINE_FILES",
    "Pipeline",
    "PipelineContext",
    "explain",
    "find_pipeline_file",
    "lint",
    "load_pipeline",
]
