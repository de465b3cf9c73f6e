"""Helpers shared by the pipeline loader tests."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from farm.errors import Diagnostic, PipelineError
from farm.pipeline import Pipeline, PipelineContext, load_pipeline

FIXTURES = Path(__file__).parent / "fixtures"


def ctx(
    variables: Mapping[str, str] | None = None,
    files: Mapping[str, str] | None = None,
    changed: tuple[str, ...] | None = None,
) -> PipelineContext:
    """A context whose repository holds ``files`` (path -> text)."""
    content = dict(files or {})
    return PipelineContext(
        variables=dict(variables or {}),
        files=tuple(sorted(content)),
        read=content.get,
        changed=changed,
    )


def load(text: str, context: PipelineContext | None = None, **kwargs: Any) -> Pipeline:
    return load_pipeline(textwrap.dedent(text), ".gitlab-ci.yml", context or ctx(**kwargs))


def errors(text: str, context: PipelineContext | None = None, **kwargs: Any) -> list[Diagnostic]:
    with pytest.raises(PipelineError) as info:
        load(text, context, **kwargs)
    return info.value.diagnostics


def messages(text: str, **kwargs: Any) -> str:
    return "\n".join(str(d) for d in errors(text, **kwargs))


def names(pipeline: Pipeline) -> list[str]:
    return [j.name for j in pipeline.jobs]


def needs(pipeline: Pipeline, name: str) -> list[str] | None:
    job = pipeline.job(name)
    return None if job.needs is None else [n.job for n in job.needs]
