"""``/api/v1/blobs`` as mounted in the real app (the store's own edge cases live in
tests/integration/registry/test_blob_api.py)."""

from __future__ import annotations

import pytest

from tests.unit.api.conftest import TestClient, sha256

DATA = b"0123456789" * 10


def test_put_head_get_and_range(client: TestClient) -> None:
    digest = sha256(DATA)
    url = f"/api/v1/blobs/{digest}"
    assert client.head(url).status_code == 404
    created = client.put(url, content=DATA)
    assert created.status_code == 201, created.text
    assert created.json() == {"digest": digest, "size": len(DATA)}
    assert created.headers["location"] == url
    assert client.put(url, content=DATA).status_code == 200  # already there: stored once
    head = client.head(url)
    assert head.status_code == 200 and head.headers["content-length"] == str(len(DATA))
    assert head.headers["docker-content-digest"] == digest
    assert client.get(url).content == DATA
    part = client.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == DATA[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(DATA)}"
    beyond = client.get(url, headers={"Range": "bytes=500-600"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(DATA)}"


def test_bad_uploads_are_refused_with_their_class(client: TestClient) -> None:
    wrong = client.put(f"/api/v1/blobs/{sha256(b'other')}", content=DATA)
    assert wrong.status_code == 400 and wrong.headers["x-farm-error"] == "DigestMismatch"
    assert isinstance(wrong.json()["detail"], str)
    assert client.head(f"/api/v1/blobs/{sha256(b'other')}").status_code == 404
    malformed = client.get("/api/v1/blobs/md5:abc")
    assert malformed.status_code == 400 and "invalid digest" in malformed.json()["detail"]
    missing = client.get(f"/api/v1/blobs/{sha256(b'never stored')}")
    assert missing.status_code == 404 and missing.headers["x-farm-error"] == "BlobNotFound"


@pytest.mark.parametrize("settings_overrides", [{"max_blob_bytes": 50}])
def test_blobs_over_the_limit_are_413(client: TestClient) -> None:
    resp = client.put(f"/api/v1/blobs/{sha256(DATA)}", content=DATA)
    assert resp.status_code == 413, resp.text
    assert client.head(f"/api/v1/blobs/{sha256(DATA)}").status_code == 404


def test_resumable_upload_session(client: TestClient) -> None:
    started = client.post("/api/v1/blobs/uploads")
    assert started.status_code == 202
    location = started.headers["location"]
    assert started.headers["upload-offset"] == "0"
    first = client.patch(location, content=DATA[:40], headers={"Upload-Offset": "0"})
    assert first.status_code == 202 and first.headers["upload-offset"] == "40"
    status = client.get(location)
    assert status.status_code == 204 and status.headers["upload-offset"] == "40"
    # A chunk at the wrong offset is refused with where to resume.
    gap = client.patch(location, content=DATA[50:], headers={"Upload-Offset": "50"})
    assert gap.status_code == 416 and gap.headers["upload-offset"] == "40"
    digest = sha256(DATA)
    done = client.put(
        location, params={"digest": digest}, content=DATA[40:], headers={"Upload-Offset": "40"}
    )
    assert done.status_code == 201, done.text
    assert done.headers["location"] == f"/api/v1/blobs/{digest}"
    assert client.get(done.headers["location"]).content == DATA
    unknown = client.get("/api/v1/blobs/uploads/no-such-session")
    assert unknown.status_code in (400, 404) and isinstance(unknown.json()["detail"], str)
