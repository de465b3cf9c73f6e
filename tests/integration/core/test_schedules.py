"""Pipeline schedules with several API processes on one database: each run fires once.

Two apps (two coordinators, two timer threads: what two API processes are) share one
database — SQLite, and a real PostgreSQL where the claims truly race. Their timers tick
every few milliseconds on a clock the test moves; every due run must make exactly one
build, and ``next_run_at`` must move on.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from farm.api.app import create_app
from farm.coordinator.schedules import Scheduler
from tests.farmtest import make_repo, wait_for
from tests.integration.db.conftest import postgres_url  # noqa: F401  (a fixture)
from tests.unit.api.conftest import RecordingDispatcher, farm_settings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2")
    from fastapi.testclient import TestClient

PIPELINE = """\
nightly:
  script: [echo "$CI_PIPELINE_SOURCE"]
"""
SCHEDULES = 4


class Clock:
    """A clock the test moves; every timer reads it."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    url: str = request.getfixturevalue("postgres_url")
    # A fresh database per test: the cluster is shared by the session.
    import sqlalchemy as sa

    name = f"sched_{abs(hash(str(tmp_path))) % 10**9}"
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture
def apps(tmp_path: Path, database_url: str) -> Iterator[tuple[list[FastAPI], Clock]]:
    """Two API apps on one database, lifespans (and timer threads) running."""
    clock = Clock()
    made: list[FastAPI] = []
    with ExitStack() as stack:
        for _ in range(2):
            settings = farm_settings(
                tmp_path / "farm", database_url=database_url, schedule_tick=0.02
            )
            app = create_app(settings, dispatcher=RecordingDispatcher())
            scheduler: Scheduler = app.state.scheduler
            scheduler.clock = clock
            stack.enter_context(TestClient(app))
            made.append(app)
        yield made, clock


def _schedules(client: TestClient) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = client.get("/api/v1/schedules").json()
    return found


def _scheduled_builds(client: TestClient) -> list[dict[str, Any]]:
    found = client.get("/api/v1/builds", params={"limit": 500}).json()
    return [b for b in found if b["source"] == "schedule"]


def test_two_timers_fire_each_due_run_exactly_once(
    apps: tuple[list[FastAPI], Clock], tmp_path: Path
) -> None:
    (one, two), clock = apps
    repo = make_repo(tmp_path / "nightly", {".farm-ci.yml": PIPELINE})
    a, b = TestClient(one), TestClient(two)
    for i in range(SCHEDULES):
        body = {"repo": str(repo), "ref": "main", "cron": "*/5 * * * *", "project": f"p{i}"}
        assert a.post("/api/v1/schedules", json=body).status_code == 201
    first = {s["id"]: s["next_run_at"] for s in _schedules(b)}
    due = max(datetime.fromisoformat(t) for t in first.values())

    for round_ in (1, 2, 3):
        # Due for each schedule: (round 3) a whole day later, as after an outage.
        jump = timedelta(days=1) if round_ == 3 else timedelta(minutes=5 * (round_ - 1))
        clock.now = due + jump + timedelta(seconds=1)
        wait_for(
            lambda n=round_: len(_scheduled_builds(a)) >= SCHEDULES * n, 30, "scheduled builds"
        )
        # Both timers keep ticking (every 20 ms): give them time to (wrongly) fire again.
        time.sleep(0.6)
        made = _scheduled_builds(b)
        assert len(made) == SCHEDULES * round_, made
        for s in _schedules(a):
            assert datetime.fromisoformat(s["next_run_at"]) > clock.now
            assert s["last_build"] is not None and s["last_error"] is None
    # Each project: one build per round, all through POST /api/v1/builds' path.
    per_project: dict[str, int] = {}
    for build in _scheduled_builds(a):
        per_project[build["project"]] = per_project.get(build["project"], 0) + 1
    assert per_project == {"nightly": SCHEDULES * 3}
