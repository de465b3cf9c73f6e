"""``/api/v1/schedules`` on the real app (recording dispatcher), and its timer's ticks.

The timer's clock is the scheduler's ``clock``: tests move time instead of waiting.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from farm.coordinator.schedules import Scheduler
from tests.unit.api.conftest import TestClient


def create(client: TestClient, repo: Path, **extra: Any) -> dict[str, Any]:
    body = {"repo": str(repo), "ref": "main", "cron": "*/5 * * * *", **extra}
    resp = client.post("/api/v1/schedules", json=body)
    assert resp.status_code == 201, resp.text
    assert resp.headers["Location"] == f"/api/v1/schedules/{resp.json()['id']}"
    return dict(resp.json())


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def builds(client: TestClient) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = client.get("/api/v1/builds").json()
    return found


def test_create_list_get_update_delete(client: TestClient, repo: Path) -> None:
    made = create(client, repo, timezone="Europe/Berlin", variables={"NIGHTLY": "1"})
    assert made["project"] == "shop" and made["active"] and made["last_build"] is None
    assert at(made["next_run_at"]) > datetime.now(UTC)
    assert at(made["next_run_at"]).minute % 5 == 0
    assert [s["id"] for s in client.get("/api/v1/schedules").json()] == [made["id"]]
    assert client.get("/api/v1/schedules", params={"project": "other"}).json() == []
    assert client.get(f"/api/v1/schedules/{made['id']}").json() == made

    paused = client.patch(f"/api/v1/schedules/{made['id']}", json={"active": False}).json()
    assert paused["active"] is False and paused["next_run_at"] is None
    resumed = client.patch(f"/api/v1/schedules/{made['id']}", json={"active": True}).json()
    assert resumed["active"] and resumed["next_run_at"] is not None
    hourly = client.patch(f"/api/v1/schedules/{made['id']}", json={"cron": "0 * * * *"}).json()
    assert hourly["cron"] == "0 * * * *" and at(hourly["next_run_at"]).minute == 0

    assert client.delete(f"/api/v1/schedules/{made['id']}").status_code == 204
    assert client.get(f"/api/v1/schedules/{made['id']}").status_code == 404
    assert client.delete(f"/api/v1/schedules/{made['id']}").status_code == 404


def test_bad_input_is_a_422_naming_it(client: TestClient, repo: Path) -> None:
    for extra, word in (
        ({"cron": "* * *"}, "5 fields"),
        ({"cron": "99 * * * *"}, "cron"),
        ({"timezone": "Mars/Base"}, "time zone"),
    ):
        body = {"repo": str(repo), "ref": "main", "cron": "* * * * *", **extra}
        resp = client.post("/api/v1/schedules", json=body)
        assert resp.status_code == 422, resp.text
        assert word in resp.json()["detail"]
    assert client.get("/api/v1/schedules").json() == []
    made = create(client, repo)
    resp = client.patch(f"/api/v1/schedules/{made['id']}", json={"cron": "nope"})
    assert resp.status_code == 422
    resp = client.patch(f"/api/v1/schedules/{made['id']}", json={"owner": "x"})
    assert resp.status_code == 422


def test_run_now_builds_with_source_schedule_and_keeps_the_timetable(
    client: TestClient, repo: Path
) -> None:
    made = create(client, repo, variables={"NIGHTLY": "yes"})
    resp = client.post(f"/api/v1/schedules/{made['id']}/run")
    assert resp.status_code == 201, resp.text
    build = resp.json()
    assert build["source"] == "schedule" and build["ref"] == "main"
    after = client.get(f"/api/v1/schedules/{made['id']}").json()
    assert after["last_build"] == build["id"] and after["last_error"] is None
    assert after["next_run_at"] == made["next_run_at"]
    # A build of the API says so.
    plain = client.post("/api/v1/builds", json={"repo": str(repo)}).json()
    assert plain["source"] == "api"


def test_a_run_that_cannot_build_is_recorded(client: TestClient, repo: Path) -> None:
    made = create(client, repo, ref="no-such-branch")
    resp = client.post(f"/api/v1/schedules/{made['id']}/run")
    assert resp.status_code == 422
    after = client.get(f"/api/v1/schedules/{made['id']}").json()
    assert after["last_build"] is None and "no-such-branch" in after["last_error"]


def test_the_timer_fires_a_due_run_once_and_missed_runs_once(
    app: FastAPI, client: TestClient, repo: Path
) -> None:
    made = create(client, repo)
    scheduler: Scheduler = app.state.scheduler
    first = at(made["next_run_at"])
    scheduler.clock = lambda: first - timedelta(seconds=1)
    assert scheduler.tick() == []  # not due yet
    scheduler.clock = lambda: first + timedelta(seconds=2)
    fired = scheduler.tick()
    assert len(fired) == 1 and fired[0].source == "schedule"
    assert scheduler.tick() == []  # the same run is not fired again
    after = client.get(f"/api/v1/schedules/{made['id']}").json()
    assert at(after["next_run_at"]) == first + timedelta(minutes=5)
    assert after["last_build"] == fired[0].id

    # The farm was down for a day: 288 slots missed, one build, then the timetable goes on.
    day_later = first + timedelta(days=1, seconds=30)
    scheduler.clock = lambda: day_later
    assert len(scheduler.tick()) == 1
    assert scheduler.tick() == []
    after = client.get(f"/api/v1/schedules/{made['id']}").json()
    assert at(after["next_run_at"]) == first + timedelta(days=1, minutes=5)
    assert len([b for b in builds(client) if b["source"] == "schedule"]) == 2


def test_a_paused_schedule_does_not_fire(app: FastAPI, client: TestClient, repo: Path) -> None:
    made = create(client, repo, active=False)
    assert made["next_run_at"] is None
    scheduler: Scheduler = app.state.scheduler
    scheduler.clock = lambda: datetime.now(UTC) + timedelta(days=30)
    assert scheduler.tick() == []
