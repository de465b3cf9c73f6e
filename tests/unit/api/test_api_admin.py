"""``/api/v1/admin/gc``: the report's shape, dry runs and the grace window."""

from __future__ import annotations

from typing import Any

from tests.unit.api.conftest import TestClient, WorkerWire

REPORT_KEYS = {
    "dry_run": bool,
    "grace_seconds": (int, float),
    "scanned": int,
    "referenced": int,
    "young": int,
    "swept": int,
    "swept_bytes": int,
    "kept_bytes": int,
    "digests": list,
}


def gc(client: TestClient, **params: Any) -> dict[str, Any]:
    resp = client.post("/api/v1/admin/gc", params=params)
    assert resp.status_code == 200, resp.text
    report: dict[str, Any] = resp.json()
    assert set(report) == set(REPORT_KEYS), report
    for key, kind in REPORT_KEYS.items():
        assert isinstance(report[key], kind), (key, report)
    return report


def test_dry_run_report_keeps_everything(
    client: TestClient, worker: WorkerWire, green_build: dict[str, Any]
) -> None:
    stray = worker.upload(b"nobody references me")
    report = gc(client, dry_run="true")
    assert report["dry_run"] is True and report["grace_seconds"] == 3600
    assert report["swept"] == 0 and report["digests"] == []
    assert report["young"] == 1  # the stray blob, inside the grace window
    assert report["referenced"] == report["scanned"] - 1 >= 4  # snapshot, archive, ...

    would = gc(client, dry_run="true", grace=0)
    assert would["digests"] == [stray] and would["swept"] == 1
    assert would["swept_bytes"] == len(b"nobody references me")
    assert client.head(f"/api/v1/blobs/{stray}").status_code == 200  # only reported


def test_sweep_removes_only_unreferenced_blobs(
    client: TestClient, worker: WorkerWire, green_build: dict[str, Any]
) -> None:
    stray = worker.upload(b"sweep me")
    swept = gc(client, grace=0)
    assert swept["dry_run"] is False and swept["digests"] == [stray]
    assert client.head(f"/api/v1/blobs/{stray}").status_code == 404
    archive = next(j for j in green_build["jobs"] if j["name"] == "compile")["artifacts"][0]
    assert client.get(archive["url"]).status_code == 200
    assert client.get(green_build["deliverable"]["url"]).status_code == 200
    assert gc(client, grace=0)["swept"] == 0


def test_negative_grace_is_422(client: TestClient) -> None:
    resp = client.post("/api/v1/admin/gc", params={"grace": -1})
    assert resp.status_code == 422 and resp.json()["detail"].startswith("query.grace: ")
