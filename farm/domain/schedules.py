"""Pipeline schedules (GitLab's): a project's ref built on a cron timetable. PURE rules.

A schedule's cron has GitLab's five fields (minute hour day-of-month month day-of-week,
with ``*/n``, ranges, lists, names, ``L``) read in its own time zone (IANA name, default
UTC), so ``0 9 * * 1-5`` is nine o'clock local time across daylight-saving changes.
:func:`next_run` gives the first run strictly after a moment: the timer computes it from
*now* when it fires a schedule, so runs missed while the farm was down fire once, not
once per missed slot (as on GitLab).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from farm.errors import InvalidRequest

__all__ = ["NewSchedule", "ScheduleRecord", "check_cron", "check_timezone", "next_run"]

_FIELDS = 5


@dataclass(frozen=True)
class NewSchedule:
    """What a person asks for (checked by :func:`check_cron`, :func:`check_timezone`)."""

    project: str
    repo: str
    ref: str
    cron: str
    timezone: str = "UTC"
    description: str = ""
    variables: dict[str, str] = field(default_factory=dict)
    active: bool = True


@dataclass(frozen=True)
class ScheduleRecord:
    """A stored schedule and what it last did."""

    id: int
    project: str
    repo: str
    ref: str
    cron: str
    timezone: str
    description: str
    variables: dict[str, str]
    active: bool
    next_run_at: datetime | None  # UTC; None while paused
    last_run_at: datetime | None
    last_build_id: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime


def check_cron(expr: str) -> str:
    """``expr`` with its fields single-spaced; InvalidRequest naming what is wrong."""
    fields = expr.split()
    if len(fields) != _FIELDS:
        raise InvalidRequest(
            f"cron {expr[:100]!r} must have 5 fields (minute hour day-of-month month "
            f"day-of-week), not {len(fields)}"
        )
    text = " ".join(fields)
    try:
        next(CronSim(text, datetime(2000, 1, 1, tzinfo=UTC)))
    except (CronSimError, StopIteration) as exc:
        raise InvalidRequest(f"cron {text[:100]!r}: {exc or 'never runs'}") from None
    return text


def check_timezone(name: str) -> str:
    """``name`` if it is an IANA time zone (``UTC``, ``Europe/Berlin``); InvalidRequest."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidRequest(f"time zone {name[:100]!r} is not an IANA time zone name") from None
    return name


def next_run(cron: str, timezone: str, after: datetime) -> datetime:
    """The first moment strictly after ``after`` that ``cron`` names in ``timezone``, in
    UTC, whole seconds (so a compare-and-set on it compares what was stored)."""
    local = after.astimezone(ZoneInfo(timezone)).replace(microsecond=0)
    when = next(CronSim(cron, local))
    return when.astimezone(UTC).replace(microsecond=0)
