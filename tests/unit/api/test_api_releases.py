"""``/api/v1/releases``: immutable versions of green builds, and when one may go."""

from __future__ import annotations

from typing import Any

from tests.unit.api.conftest import Submit, TestClient, WorkerWire


def release(client: TestClient, build: int, version: str, **extra: Any) -> Any:
    return client.post("/api/v1/releases", json={"build": build, "version": version, **extra})


def test_create_get_and_list(client: TestClient, green_build: dict[str, Any]) -> None:
    build_id = green_build["id"]
    created = release(client, build_id, "1.0.0")
    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/api/v1/releases/shop/1.0.0"
    doc = created.json()
    assert (doc["project"], doc["version"], doc["build"]) == ("shop", "1.0.0", build_id)
    assert doc["commit"] == green_build["commit"] and doc["ref"] == "main"
    assert doc["deliverable_digest"] == green_build["deliverable"]["digest"]
    assert client.get(doc["deliverable_url"]).status_code == 200
    assert client.get(doc["provenance_url"]).status_code == 200
    assert client.get("/api/v1/releases/shop/1.0.0").json() == doc
    # Re-posting the very same release is a safe retry.
    again = release(client, build_id, "1.0.0", project="shop")
    assert again.status_code == 200 and again.json() == doc
    assert [r["version"] for r in client.get("/api/v1/releases").json()] == ["1.0.0"]
    assert client.get("/api/v1/releases", params={"project": "other"}).json() == []


def test_versions_are_immutable_and_only_green_builds_release(
    client: TestClient, submit: Submit, worker: WorkerWire, green_build: dict[str, Any]
) -> None:
    assert release(client, green_build["id"], "1.0.0").status_code == 201
    second = worker.run_build(submit()["id"])
    assert second["status"] == "success"
    clash = release(client, second["id"], "1.0.0")
    assert clash.status_code == 409 and "immutable" in clash.json()["detail"]

    running = submit()
    busy = release(client, running["id"], "2.0.0")
    assert busy.status_code == 409 and busy.json()["error"] == "Conflict"
    failed = worker.run_build(submit()["id"], {"compile": 1})
    assert failed["status"] == "failed"
    red = release(client, failed["id"], "2.0.0")
    assert red.status_code == 422 and red.json()["error"] == "InvalidRequest"

    wrong_project = release(client, second["id"], "2.0.0", project="other")
    assert (
        wrong_project.status_code == 422 and "belongs to project" in wrong_project.json()["detail"]
    )
    assert release(client, second["id"], "bad version!").status_code == 422
    assert release(client, 4242, "2.0.0").status_code == 404
    assert release(client, second["id"], "").status_code == 422  # validation: empty version
    # None of the refusals left anything behind.
    assert [r["version"] for r in client.get("/api/v1/releases").json()] == ["1.0.0"]


def test_delete_only_what_nothing_references(
    client: TestClient, submit: Submit, worker: WorkerWire, green_build: dict[str, Any]
) -> None:
    assert release(client, green_build["id"], "1.0.0").status_code == 201
    latest = client.delete("/api/v1/releases/shop/1.0.0")
    assert latest.status_code == 409 and "latest release of shop" in latest.json()["detail"]

    newer = worker.run_build(submit()["id"])
    assert release(client, newer["id"], "1.1.0").status_code == 201
    listed = client.get("/api/v1/releases", params={"project": "shop"}).json()
    assert [r["version"] for r in listed] == ["1.1.0", "1.0.0"]  # newest first
    gone = client.delete("/api/v1/releases/shop/1.0.0")
    assert gone.status_code == 204 and gone.content == b""
    assert client.get("/api/v1/releases/shop/1.0.0").status_code == 404
    assert client.delete("/api/v1/releases/shop/1.0.0").status_code == 404
    assert client.delete("/api/v1/releases/shop/1.1.0").status_code == 409
