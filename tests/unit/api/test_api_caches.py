"""``/api/v1/worker/caches``: the cache index workers share (project + key -> blob)."""

from __future__ import annotations

from tests.unit.api.conftest import TestClient, WorkerWire, sha256


def test_a_key_points_at_an_uploaded_archive(client: TestClient, worker: WorkerWire) -> None:
    url = "/api/v1/worker/caches/group/shop/deps-main"  # projects may contain slashes
    missing = client.get(url)
    assert missing.status_code == 404 and missing.json()["error"] == "NotFound"
    assert "deps-main" in missing.json()["detail"]

    digest = worker.upload(b"cache v1")
    put = client.put(url, json={"digest": digest, "size": 8})
    assert put.status_code == 200, put.text
    entry = client.get(url).json()
    assert (entry["project"], entry["key"], entry["digest"], entry["size"]) == (
        "group/shop",
        "deps-main",
        digest,
        8,
    )
    assert entry["updated_at"]
    # Last writer wins, as on GitLab.
    newer = worker.upload(b"cache v2!")
    client.put(url, json={"digest": newer, "size": 9})
    assert client.get(url).json()["digest"] == newer
    # Keys are per project.
    assert client.get("/api/v1/worker/caches/other/deps-main").status_code == 404


def test_refused_cache_writes(client: TestClient) -> None:
    url = "/api/v1/worker/caches/shop/k"
    not_uploaded = client.put(url, json={"digest": sha256(b"nowhere"), "size": 7})
    assert not_uploaded.status_code == 400 and not_uploaded.json()["error"] == "UploadError"
    for body in ({"digest": "sha256:xyz", "size": 1}, {"digest": sha256(b"a"), "size": -1}, {}):
        resp = client.put(url, json=body)
        assert resp.status_code == 422 and resp.json()["error"] == "ValidationError", body
    assert client.get(url).status_code == 404
