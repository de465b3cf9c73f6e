"""`farm lint` through the `farm` group: exit codes and file:line:col (the command's
options are covered in tests/unit/pipeline/test_pipeline_lint_cli.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.api.conftest import BAD_PIPELINE, PIPELINE
from tests.unit.cli.conftest import Farm, one_line


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_good_file_is_ok(farm: Farm, here: Path) -> None:
    (here / ".farm-ci.yml").write_text(PIPELINE)
    result = farm("lint")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "OK: 3 jobs in 3 stages"


def test_a_bad_file_names_file_line_and_column(farm: Farm, here: Path) -> None:
    (here / "ci.yml").write_text(BAD_PIPELINE)
    result = farm("lint", "ci.yml")
    assert result.exit_code == 1
    line = one_line(result.stdout)
    assert line.startswith("ci.yml:4:3: ") and "'nope'" in line
    assert result.stderr.strip() == "1 problem found"
    as_json = farm("lint", "ci.yml", "--json")
    assert as_json.exit_code == 1
    [diag] = json.loads(as_json.stdout)["diagnostics"]
    assert (diag["file"], diag["line"], diag["col"]) == ("ci.yml", 4, 3)


def test_a_missing_file_is_one_line(farm: Farm, here: Path) -> None:
    result = farm("lint", "nowhere.yml")
    assert result.exit_code == 1
    assert "cannot read nowhere.yml" in one_line(result.stderr)
