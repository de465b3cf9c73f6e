"""Every failure is one readable line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.farmtest import make_repo
from tests.unit.api.conftest import BAD_PIPELINE
from tests.unit.cli.conftest import Farm, LiveApi, one_line


@pytest.mark.parametrize(
    "args",
    [("status", "1"), ("submit", "https://example.invalid/x.git")],  # a GET and a POST
    ids=["status", "submit"],
)
def test_an_unreachable_api_is_one_line(farm: Farm, dead_api: str, args: tuple[str, ...]) -> None:
    result = farm(*args, api=dead_api)
    assert result.exit_code != 0
    line = one_line(result.stderr)
    assert line.startswith("error: ") and "cannot reach the farm API" in line
    assert dead_api in line and result.stdout == ""


def test_unknown_build_and_job_are_one_line(farm: Farm) -> None:
    for args, words in (
        (("status", "987654"), "build 987654 does not exist"),
        (("cancel", "987654"), "build 987654 does not exist"),
        (("logs", "987654"), "job 987654 does not exist"),
        (("play", "987654"), "job 987654 does not exist"),
        (("release", "show", "nope", "1.0"), "no release 1.0 of project 'nope'"),
    ):
        result = farm(*args)
        assert result.exit_code != 0, args
        assert one_line(result.stderr) == f"error: {words}", args
        assert result.stdout == ""


def test_conflicts_are_one_line(farm: Farm, green: dict[str, Any]) -> None:
    canceled = farm("cancel", str(green["id"]))
    assert canceled.exit_code != 0
    assert "already finished (success)" in one_line(canceled.stderr)
    compile_id = next(j["id"] for j in green["jobs"] if j["name"] == "compile")
    played = farm("play", str(compile_id))
    assert played.exit_code != 0 and "not waiting to be played" in one_line(played.stderr)


def test_a_bad_pipeline_is_one_line_naming_file_and_line(
    farm: Farm, tmp_path: Path, live_api: LiveApi
) -> None:
    bad = make_repo(tmp_path / "bad-pipeline", {".farm-ci.yml": BAD_PIPELINE})
    before = len(live_api.http.get("/api/v1/builds", params={"limit": 500}).json())
    result = farm("submit", str(bad))
    assert result.exit_code != 0
    line = one_line(result.stderr)
    assert line.startswith("error: .farm-ci.yml:4:") and "nope" in line
    assert len(live_api.http.get("/api/v1/builds", params={"limit": 500}).json()) == before


def test_a_source_that_cannot_be_read_is_one_line(farm: Farm, tmp_path: Path) -> None:
    result = farm("submit", str(tmp_path / "not-a-repo"))
    assert result.exit_code != 0
    assert "does not exist" in one_line(result.stderr)


def test_bad_arguments_are_usage_errors(farm: Farm, project: Path) -> None:
    result = farm("submit", str(project), "--var", "no-equals-sign")
    assert result.exit_code == 2 and "is not KEY=VALUE" in result.stderr
    assert "Traceback" not in result.output
