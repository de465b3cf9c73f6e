"""``farm lint --explain --json`` on GitLab-compat fixtures: same shape, plus warnings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from gitlab_fixtures import GITLAB

from farm.cli.lint import lint
from farm.settings import get_settings


@pytest.fixture
def catalog_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FARM_COMPONENT_CATALOG", str(GITLAB / "catalog"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def run(path: Path, *args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = CliRunner().invoke(lint, [str(path), "--ref", "main", "--explain", "--json", *args])
    return result.exit_code, json.loads(result.stdout)


def test_json_keeps_its_shape_and_lists_warnings(tmp_path: Path) -> None:
    shutil.copy(GITLAB / "image_services.gitlab-ci.yml", tmp_path / ".gitlab-ci.yml")
    code, out = run(tmp_path / ".gitlab-ci.yml")
    assert code == 0 and out["ok"] is True
    assert out["stages"] == ["build", "test"] and out["job_count"] == 2
    job = out["jobs"][0]
    assert {"name", "stage", "when", "allow_failure", "needs"} <= set(job)
    assert [w["line"] for w in out["warnings"]] == [6, 10]
    assert ".gitlab-ci.yml:6:5: warning: image:pull_policy" in out["warnings"][0]["text"]


def test_matrix_names_in_json(tmp_path: Path) -> None:
    shutil.copy(GITLAB / "matrix_needs.gitlab-ci.yml", tmp_path / ".gitlab-ci.yml")
    code, out = run(tmp_path / ".gitlab-ci.yml")
    assert code == 0
    test = next(j for j in out["jobs"] if j["name"] == "linux:test: [gcp, app2]")
    assert test["needs"] == ["linux:build: [gcp, app2]"] and test["stage"] == "test"


def test_components_through_the_setting(tmp_path: Path, catalog_env: None) -> None:
    shutil.copy(GITLAB / "component-user" / ".gitlab-ci.yml", tmp_path / ".gitlab-ci.yml")
    # CI_SERVER_FQDN is not predefined by lint: give it as GitLab would
    code, out = run(tmp_path / ".gitlab-ci.yml", "--var", "CI_SERVER_FQDN=gitlab.example.com")
    assert code == 0, out
    assert [j["name"] for j in out["jobs"]] == ["lint-job", "lint-v2", "deploy-production", "unit"]


def test_component_without_setting_is_refused_with_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FARM_COMPONENT_CATALOG", raising=False)
    get_settings.cache_clear()
    (tmp_path / ".gitlab-ci.yml").write_text(
        "include:\n  - component: gitlab.com/org/proj/lint@1.0\njob:\n  script: x\n"
    )
    code, out = run(tmp_path / ".gitlab-ci.yml")
    assert code == 1 and out["ok"] is False
    first = out["diagnostics"][0]
    assert (first["line"], first["col"]) == (2, 5)
    assert "FARM_COMPONENT_CATALOG" in first["message"]
    get_settings.cache_clear()
