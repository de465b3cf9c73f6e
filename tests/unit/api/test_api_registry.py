"""Registry metadata: artifact search, signed provenance, the signing key, endpoints."""

from __future__ import annotations

import json
from typing import Any

from farm.registry.provenance import (
    PAYLOAD_TYPE,
    key_id,
    load_public_key,
    subject_digests,
    verify_envelope,
)
from tests.unit.api.conftest import Submit, TestClient, job_id


def test_artifacts_search(client: TestClient, green_build: dict[str, Any]) -> None:
    build_id, commit = green_build["id"], green_build["commit"]
    rows = client.get("/api/v1/artifacts", params={"build": build_id}).json()
    assert {r["kind"] for r in rows} == {"archive", "deliverable", "provenance"}
    [archive] = [r for r in rows if r["kind"] == "archive"]
    assert archive["build"] == build_id and archive["job"] == job_id(green_build, "compile")
    assert (archive["job_name"], archive["name"], archive["project"]) == (
        "compile",
        "compile",
        "shop",
    )
    assert archive["ref"] == "main" and archive["commit"] == commit
    assert archive["build_status"] == "success"
    assert archive["url"] == f"/api/v1/artifacts/{archive['digest']}"
    assert client.get(archive["url"]).status_code == 200

    def search(**params: Any) -> list[str]:
        return [r["digest"] for r in client.get("/api/v1/artifacts", params=params).json()]

    assert search(kind="archive") == [archive["digest"]]
    assert search(name="compile", project="shop", ref="main") == [archive["digest"]]
    assert search(commit=commit[:7], kind="archive") == [archive["digest"]]
    assert search(project="other") == [] and search(commit="f" * 40) == []
    assert len(search(build=build_id, limit=1)) == 1
    assert client.get("/api/v1/artifacts", params={"limit": 0}).status_code == 422


def test_provenance_of_a_green_build_verifies(
    client: TestClient, green_build: dict[str, Any]
) -> None:
    key = client.get("/api/v1/keys/provenance.pub")
    assert key.status_code == 200 and key.text.startswith("-----BEGIN PUBLIC KEY-----")
    public = load_public_key(key.content)
    assert key.headers["x-farm-key-id"] == key_id(public)

    resp = client.get(f"/api/v1/builds/{green_build['id']}/provenance")
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-farm-payload-type"] == PAYLOAD_TYPE
    statement = verify_envelope(json.loads(resp.content), public)
    subjects = subject_digests(statement)
    archive = next(j for j in green_build["jobs"] if j["name"] == "compile")["artifacts"][0]
    assert archive["digest"] in subjects.values()
    assert green_build["deliverable"]["digest"] in subjects.values()


def test_no_provenance_until_green(client: TestClient, submit: Submit) -> None:
    build = submit()
    resp = client.get(f"/api/v1/builds/{build['id']}/provenance")
    assert resp.status_code == 404 and "only for successful builds" in resp.json()["detail"]
    assert client.get("/api/v1/builds/4242/provenance").status_code == 404


def test_endpoints_without_a_data_plane(client: TestClient) -> None:
    resp = client.get("/api/v1/registry/endpoints")
    assert resp.json() == {"api": "http://testserver", "blob_data": None}
