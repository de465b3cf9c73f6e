"""The rollout page on the real app: steps with each scope's version now, the checks'
figures, the history, and command buttons that the engine judges (a health server on
127.0.0.1; no broker, no Docker)."""

from __future__ import annotations

import html as htmllib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.farmtest import Health, make_repo
from tests.unit.api.conftest import PIPELINE, WorkerWire
from tests.unit.api.test_api_rollouts import PLAN, _release, _wait


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"rollout_tick": 0.05}


def test_a_stepped_back_rollout_shows_versions_checks_history_and_commands(
    client: TestClient, worker: WorkerWire, tmp_path: Path, health: Health
) -> None:
    files = {".farm-ci.yml": PIPELINE, ".farm/rollout.yml": PLAN.format(port=health.port)}
    shop = make_repo(tmp_path / "shop", files)
    _release(client, worker, shop, "1.0.0")
    _release(client, worker, shop, "1.1.0")
    health.sick = {"usa"}
    rid = client.post("/api/v1/rollouts", json={"project": "shop", "version": "1.1.0"}).json()["id"]
    _wait(client, rid, {"stepped_back"})

    html = client.get(f"/rollouts/{rid}").text
    assert "stepped_back" in html
    rows = re.findall(r"<tr[^>]*>\s*<td>(\d)</td><td>(\w+)</td>.*?<strong>([^<]+)</strong>", html)
    assert rows == [("1", "canada", "1.1.0"), ("2", "usa", "1.0.0"), ("3", "all", "1.0.0")]
    assert "failed" in html and "statuses" in html  # the failed check's figures
    assert "checks_failed" in html or "step" in html  # the history lines
    # Commands the state allows, each a button posting to the JSON API with an actor.
    for action in ("promote", "step-back", "abort"):
        assert f'data-post="/api/v1/rollouts/{rid}/{action}"' in html
    assert f'data-post="/api/v1/rollouts/{rid}/resume"' not in html
    body = re.search(r'data-body="([^"]+)"', html)
    assert body is not None
    assert json.loads(htmllib.unescape(body.group(1)))["actor"].startswith("dashboard:")
    # The releases page lists the rollout and both releases.
    releases = client.get("/releases", params={"project": "shop"}).text
    assert f'href="/rollouts/{rid}"' in releases and "1.0.0" in releases and "1.1.0" in releases
    assert 'data-final="false"' in client.get(f"/rollouts/{rid}/live").text  # still active
