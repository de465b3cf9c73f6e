"""farm lint: file:line:col output, exit codes, --explain, --json, --ref and --var."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from farm.cli.lint import lint, repo_files

PIPELINE = """\
include: ci/*.yml
deploy:
  stage: deploy
  script: ./deploy $TARGET
  rules:
    - if: $CI_COMMIT_BRANCH == "release"
    - if: $FORCE == "1"
"""


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "ci").mkdir()
    (tmp_path / ".gitlab-ci.yml").write_text(PIPELINE)
    (tmp_path / "ci" / "build.yml").write_text(
        "build:\n  stage: build\n  parallel: 2\n  script: make\n"
    )
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_ok_and_explain(repo: Path) -> None:
    result = CliRunner().invoke(lint, ["--ref", "main"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("OK: 2 jobs in 1 stages")
    result = CliRunner().invoke(lint, [".gitlab-ci.yml", "--ref", "release", "--explain"])
    assert (
        result.exit_code == 0
        and "deploy" in result.output
        and "OK: 3 jobs in 2 stages" in result.output
    )


def test_var_and_json(repo: Path) -> None:
    result = CliRunner().invoke(lint, ["--var", "FORCE=1", "--json", "--ref", "x"])
    data = json.loads(result.output)
    assert data["ok"] and data["job_count"] == 3 and data["stages"] == ["build", "deploy"]
    assert [j["name"] for j in data["jobs"]] == ["build 1/2", "build 2/2", "deploy"]
    assert CliRunner().invoke(lint, ["--var", "nonsense"]).exit_code == 2


def test_problems_exit_1_with_locations(repo: Path) -> None:
    (repo / "ci" / "build.yml").write_text(
        "build:\n  stage: nope\n  script: make\n  timeout: soon\n"
    )
    result = CliRunner().invoke(lint, [])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].startswith("ci/build.yml:2:3: job 'build' uses stage 'nope'")
    assert lines[1].startswith("ci/build.yml:4:3: timeout")
    result = CliRunner().invoke(lint, ["--json"])
    assert result.exit_code == 1
    assert json.loads(result.output)["diagnostics"][0]["line"] == 2


def test_farm_ci_file_wins_and_missing_file(repo: Path) -> None:
    (repo / ".farm-ci.yml").write_text("only_farm:\n  script: x\n")
    result = CliRunner().invoke(lint, [])
    assert "OK: 1 jobs in 1 stages" in result.output
    result = CliRunner().invoke(lint, ["nope.yml"])
    assert result.exit_code != 0 and "Traceback" not in result.output


def test_no_pipeline_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(lint, [])
    assert result.exit_code == 1 and "no .farm-ci.yml or .gitlab-ci.yml" in result.output


def test_filtered_out_is_ok(repo: Path) -> None:
    (repo / ".gitlab-ci.yml").write_text(
        "workflow:\n  rules:\n    - when: never\njob:\n  script: x\n"
    )
    result = CliRunner().invoke(lint, [])
    assert result.exit_code == 0 and "OK: valid, but" in result.output


def test_repo_files_walk_skips_git(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "b.yml").write_text("")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text("")
    files = repo_files(tmp_path)
    assert "a/b.yml" in files and not any(f.startswith(".git/") for f in files)
