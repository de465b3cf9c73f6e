"""How ``farm status`` shows a job, and ``farm builds`` a build: plain aligned lines
(they go to pipes and CI logs as often as to terminals)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from farm.domain.clock import format_duration

MAX_CASES_SHOWN = 5  # failing test cases listed under a job (the API keeps up to 100)


def duration(seconds: float | None) -> str:
    """``12.3s``, ``4m05s``, ``1h02m``; empty when unknown."""
    return format_duration(seconds)


def tests_summary(tests: dict[str, Any] | None) -> str:
    """``tests 12: 1 failed, 2 skipped`` from a job's test report; empty without one."""
    if not tests:
        return ""
    parts = [
        f"{tests[key]} {word}"
        for key, word in (("failures", "failed"), ("errors", "errors"), ("skipped", "skipped"))
        if tests.get(key)
    ]
    return f"tests {tests['tests']}" + (": " + ", ".join(parts) if parts else " passed")


def job_lines(job: dict[str, Any]) -> list[str]:
    """A job's line (status, duration, attempt, coverage, test totals), then its failing
    test cases (a few)."""
    extra = f" exit={job['exit_code']}" if job.get("exit_code") is not None else ""
    reason = f" ({job['reason']})" if job.get("reason") else ""
    facts = [duration(job.get("duration"))]
    if job.get("attempt", 1) > 1:
        facts.append(f"attempt {job['attempt']}")
    if job.get("coverage") is not None:
        facts.append(f"coverage {job['coverage']:g}%")
    facts.append(tests_summary(job.get("tests")))
    tail = "  ".join(f for f in facts if f)
    state = f"{job['status']}{extra}{reason}"
    line = f"  {job['id']:>6}  {job['stage']:<10} {job['name']:<30} {state:<24} {tail}"
    lines = [line.rstrip()]
    for case in (job.get("tests") or {}).get("failed", [])[:MAX_CASES_SHOWN]:
        where = ".".join(p for p in (case.get("classname"), case.get("name")) if p)
        message = (case.get("message") or "").splitlines()[0:1]
        lines.append(f"          ✗ {where}" + (f": {message[0][:120]}" if message else ""))
    return lines


def _when(value: str | None) -> str:
    if not value:
        return ""
    return datetime.fromisoformat(value).astimezone().strftime("%Y-%m-%d %H:%M")


def _took(build: dict[str, Any]) -> float | None:
    start, end = build.get("started_at"), build.get("finished_at")
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


BUILD_COLUMNS = ("id", "status", "project", "ref", "commit", "created", "duration")


def build_rows(builds: list[dict[str, Any]]) -> list[str]:
    """The table ``farm builds`` prints: a header, then one aligned row per build."""
    rows = [list(BUILD_COLUMNS)]
    for b in builds:
        rows.append(
            [
                str(b["id"]),
                str(b["status"]),
                str(b["project"]),
                str(b["ref"]),
                str(b.get("commit") or "")[:8],
                _when(b.get("created_at")),
                duration(_took(b)),
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(BUILD_COLUMNS))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
