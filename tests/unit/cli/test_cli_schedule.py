"""``farm schedule``: add, ls, run, pause, resume, rm against the live app."""

from __future__ import annotations

import json
from pathlib import Path

from tests.unit.cli.conftest import Farm, one_line


def test_schedule_add_ls_run_pause_resume_rm(farm: Farm, project: Path) -> None:
    added = farm(
        "schedule", "add", str(project), "--ref", "main", "--cron", "0 3 * * *",
        "--tz", "Europe/Berlin", "--var", "NIGHTLY=1", "--json",
    )  # fmt: skip
    assert added.exit_code == 0, added.stderr
    doc = json.loads(added.stdout)
    sid = doc["id"]
    assert doc["variables"] == {"NIGHTLY": "1"} and doc["active"]

    listed = farm("schedule", "ls", "--project", doc["project"])
    line = one_line(listed.stdout)
    assert line.split()[:2] == [str(sid), doc["project"]] and "'0 3 * * *'" in line

    ran = farm("schedule", "run", str(sid))
    assert ran.exit_code == 0, ran.stderr
    assert ran.stdout.startswith("build ")

    paused = json.loads(farm("schedule", "pause", str(sid), "--json").stdout)
    assert paused["active"] is False and paused["next_run_at"] is None
    assert "paused" in farm("schedule", "ls", "--project", doc["project"]).stdout
    resumed = json.loads(farm("schedule", "resume", str(sid), "--json").stdout)
    assert resumed["active"] and resumed["next_run_at"]

    assert farm("schedule", "rm", str(sid)).stdout.strip() == f"schedule {sid} deleted"
    gone = farm("schedule", "rm", str(sid))
    assert gone.exit_code != 0 and "does not exist" in one_line(gone.stderr)


def test_schedule_add_with_a_bad_cron_is_one_line(farm: Farm, project: Path) -> None:
    bad = farm("schedule", "add", str(project), "--ref", "main", "--cron", "* * *")
    assert bad.exit_code != 0 and "5 fields" in one_line(bad.stderr)
    var = farm(
        "schedule", "add", str(project), "--ref", "main", "--cron", "* * * * *", "--var", "X"
    )
    assert var.exit_code != 0 and "NAME=VALUE" in one_line(var.stderr)
