"""Pipeline schedule rules: cron fields, time zones, the next run."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from farm.domain.schedules import check_cron, check_timezone, next_run
from farm.errors import InvalidRequest


def test_next_run_is_strictly_after_and_whole_seconds() -> None:
    at = datetime(2026, 1, 1, 10, 0, 0, 500_000, tzinfo=UTC)
    assert next_run("* * * * *", "UTC", at) == datetime(2026, 1, 1, 10, 1, tzinfo=UTC)
    exact = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    assert next_run("0 * * * *", "UTC", exact) == datetime(2026, 1, 1, 11, 0, tzinfo=UTC)


def test_cron_is_read_in_the_schedules_time_zone_across_dst() -> None:
    # 09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC after the spring change.
    before = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    assert next_run("0 9 * * *", "Europe/Berlin", before) == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)
    winter = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
    assert next_run("0 9 * * *", "Europe/Berlin", winter) == datetime(2026, 1, 11, 8, 0, tzinfo=UTC)


def test_a_long_outage_gives_one_next_run_not_a_backlog() -> None:
    later = datetime(2026, 6, 1, 12, 0, 30, tzinfo=UTC)
    assert next_run("*/5 * * * *", "UTC", later) == datetime(2026, 6, 1, 12, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    "expr", ["* * * *", "*/5 * * * * *", "61 * * * *", "@daily", "0 0 31 2 *", ""]
)
def test_bad_cron_is_refused_with_a_reason(expr: str) -> None:
    with pytest.raises(InvalidRequest):
        check_cron(expr)


def test_cron_fields_are_normalized() -> None:
    assert check_cron("  0   3 * *  1-5 ") == "0 3 * * 1-5"


def test_time_zones_are_iana_names() -> None:
    assert check_timezone("America/Toronto") == "America/Toronto"
    for bad in ("Mars/Olympus", "../etc/passwd", ""):
        with pytest.raises(InvalidRequest):
            check_timezone(bad)
