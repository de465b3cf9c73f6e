"""Loading the GitLab-documented fixtures under tests/fixtures/gitlab/ (shared by tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from farm.domain.specs import JobSpec, Pipeline, PipelineContext
from farm.errors import PipelineError
from farm.pipeline import load_pipeline

GITLAB = Path(__file__).resolve().parents[2] / "fixtures" / "gitlab"
MAIN = {
    "CI_COMMIT_BRANCH": "main",
    "CI_COMMIT_REF_NAME": "main",
    "CI_DEFAULT_BRANCH": "main",
    "CI_PIPELINE_SOURCE": "push",
    "CI_PROJECT_NAME": "shop",
    "CI_PROJECT_PATH": "group/shop",
    "CI_PROJECT_DIR": "/builds/group/shop",
    "CI_SERVER_FQDN": "gitlab.example.com",
}


def tree(base: Path) -> dict[str, str]:
    """Every file under ``base``, by its path relative to ``base``."""
    return {p.relative_to(base).as_posix(): p.read_text() for p in base.rglob("*") if p.is_file()}


def context(name: str, catalog: bool = True, **variables: str) -> PipelineContext:
    """The repository of fixture ``name`` (its directory), with the fixture catalog."""
    files = tree((GITLAB / name).parent)
    components = tree(GITLAB / "catalog") if catalog else None
    return PipelineContext(
        variables={**MAIN, **variables},
        files=tuple(sorted(files)),
        read=files.get,
        component_catalog="/srv/catalog" if catalog else None,
        read_component=components.get if components is not None else None,
    )


def load_fixture(name: str, catalog: bool = True, **variables: str) -> Pipeline:
    path = GITLAB / name
    return load_pipeline(path.read_text(), path.name, context(name, catalog, **variables))


def fixture_errors(name: str, catalog: bool = True, **variables: str) -> list[str]:
    """``file:line:col: message`` of every problem fixture ``name`` has."""
    with pytest.raises(PipelineError) as info:
        load_fixture(name, catalog, **variables)
    return [str(d) for d in info.value.diagnostics]


def needed(job: JobSpec) -> list[str] | None:
    return None if job.needs is None else [n.job for n in job.needs]
