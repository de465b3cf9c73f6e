"""`farm submit --wait` names the manual gates a blocked build waits for."""

from __future__ import annotations

from farm.cli.progress import blocked_message


def _job(name: str, status: str, allow_failure: bool = False) -> dict[str, object]:
    return {"name": name, "status": status, "allow_failure": allow_failure}


def test_a_blocked_build_names_its_blocking_gates_only() -> None:
    build = {
        "status": "manual",
        "jobs": [_job("build", "success"), _job("deploy", "manual"), _job("x", "manual", True)],
    }
    assert blocked_message(build) == "waiting for manual job deploy"


def test_other_builds_are_not_blocked() -> None:
    assert blocked_message({"status": "success", "jobs": []}) is None
