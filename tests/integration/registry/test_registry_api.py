"""Releases, artifact search, provenance and GC through the real farm app on uvicorn.

Builds are seeded straight into the app's store (no Docker here): what is under test
is the registry's HTTP surface, its database rules and the CLI on top of them.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import insert

from farm.api.app import create_app
from farm.db.repository import Store
from farm.db.tables import CacheRow
from farm.domain.records import NewBuild
from farm.domain.specs import JobSpec
from farm.registry.factory import ProvenanceRecorder
from farm.registry.store.filesystem import FilesystemBlobStore
from farm.settings import Settings

if TYPE_CHECKING:
    from conftest import ServeFactory

PAST = datetime.now(UTC) - timedelta(days=2)


def sha(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


@dataclass
class Env:
    app: FastAPI
    url: str
    http: httpx.Client
    store: Store
    blobs: FilesystemBlobStore
    tmp: Path

    def seed(
        self,
        status: str = "success",
        project: str = "demo",
        ref: str = "main",
        commit: str | None = None,
        arts: dict[str, bytes] | None = None,
        expires_at: datetime | None = None,
    ) -> int:
        """A build with one job and its artifacts, as the coordinator would leave it."""
        commit = commit or hashlib.sha1(os.urandom(8)).hexdigest()
        snapshot = self.blobs.put_stream(iter([os.urandom(64)]))
        spec = JobSpec.from_dict({"name": "package", "stage": "build", "script": ["true"]})
        build_id = self.store.create_build(
            NewBuild(
                project=project,
                repo=f"/git/{project}",
                ref=ref,
                commit=commit,
                pipeline_file=".farm-ci.yml",
                pipeline_digest=sha(b"pipeline"),
                snapshot_digest=snapshot.digest,
                stages=("build",),
                variables={},
                jobs=((spec, "farm"),),
            ),
            status,
        )
        job = self.store.get_build(build_id).jobs[0]
        for name, data in (arts or {}).items():
            info = self.blobs.put_stream(iter([data]))
            self.store.add_artifact(
                build_id=build_id,
                job_id=job.id,
                name=name,
                kind="archive",
                digest=info.digest,
                size=info.size,
                expires_at=expires_at,
            )
        if status == "success":
            deliverable = self.blobs.put_stream(iter([f"manifest {build_id}".encode()]))
            self.store.update_build(
                build_id, deliverable_digest=deliverable.digest, finished_at=datetime.now(UTC)
            )
            self.store.add_artifact(
                build_id=build_id,
                job_id=None,
                name="deliverable.json",
                kind="deliverable",
                digest=deliverable.digest,
                size=deliverable.size,
            )
            recorder = next(
                h
                for h in self.app.state.coordinator.on_build_finished
                if isinstance(h, ProvenanceRecorder)
            )
            recorder(self.store.get_build(build_id))
        return build_id

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "farm.cli.main", "--api", self.url, *args],
            capture_output=True,
            text=True,
            timeout=120,
        )


@pytest.fixture
def env(tmp_path: Path, serve_app: ServeFactory) -> Any:
    settings = Settings(data_dir=tmp_path / "farm", broker_url="redis://127.0.0.1:1/0", auth=False)
    app = create_app(settings)
    url = serve_app(app)
    with httpx.Client(base_url=url, timeout=60) as http:
        yield Env(app, url, http, app.state.store, app.state.blobstore, tmp_path)


def test_release_rules(env: Env) -> None:
    old = env.seed(commit="a" * 40)
    new = env.seed(commit="b" * 40)
    running = env.seed(status="running")
    failed = env.seed(status="failed")

    first = env.http.post("/api/v1/releases", json={"build": old, "version": "1.0.0"})
    assert first.status_code == 201, first.text
    assert first.headers["location"] == "/api/v1/releases/demo/1.0.0"
    assert first.json()["commit"] == "a" * 40 and first.json()["build"] == old
    again = env.http.post("/api/v1/releases", json={"build": old, "version": "1.0.0"})
    assert again.status_code == 200  # the same release again: idempotent
    clash = env.http.post("/api/v1/releases", json={"build": new, "version": "1.0.0"})
    assert clash.status_code == 409 and "immutable" in clash.json()["detail"]
    busy = env.http.post("/api/v1/releases", json={"build": running, "version": "1.1"})
    assert busy.status_code == 409 and "running" in busy.json()["detail"]
    red = env.http.post("/api/v1/releases", json={"build": failed, "version": "1.1"})
    assert red.status_code == 422 and "failed" in red.json()["detail"]
    bad = env.http.post("/api/v1/releases", json={"build": new, "version": "../x"})
    assert bad.status_code == 422
    other = env.http.post(
        "/api/v1/releases", json={"build": new, "version": "2.0", "project": "other"}
    )
    assert other.status_code == 422
    assert env.http.post("/api/v1/releases", json={"build": 999, "version": "9"}).status_code == 404

    created = env.cli("release", "create", str(new), "--version", "2.0.0")
    assert created.returncode == 0, created.stderr
    assert "released: demo 2.0.0" in created.stdout
    listed = env.cli("release", "ls", "--project", "demo")
    assert listed.stdout.splitlines()[0].split()[:4] == ["demo", "2.0.0", "build", str(new)]
    assert "b" * 12 in listed.stdout and "a" * 12 in listed.stdout
    assert [r["version"] for r in env.http.get("/api/v1/releases?project=demo").json()] == [
        "2.0.0",
        "1.0.0",
    ]
    assert env.http.get("/api/v1/releases/demo/2.0.0").json()["build"] == new
    assert env.http.get("/api/v1/releases/demo/7.7").status_code == 404

    refused = env.http.delete("/api/v1/releases/demo/2.0.0")  # the latest: referenced
    assert refused.status_code == 409 and "latest release" in refused.json()["detail"]
    again_cli = env.cli("release", "create", str(failed), "--version", "3")
    assert again_cli.returncode == 2 and "only a successful build" in again_cli.stderr
    assert env.http.delete("/api/v1/releases/demo/1.0.0").status_code == 204
    assert env.http.get("/api/v1/releases/demo/1.0.0").status_code == 404


def test_artifact_search_filters(env: Env) -> None:
    a = env.seed(project="alpha", ref="main", commit="1" * 40, arts={"app.tar": b"A"})
    b = env.seed(project="alpha", ref="dev", commit="2" * 40, arts={"app.tar": b"B"})
    env.seed(project="beta", ref="main", commit="3" * 40, arts={"lib.tar": b"C"})

    def names(**params: Any) -> list[tuple[int, str]]:
        rows = env.http.get("/api/v1/artifacts", params=params).json()
        return sorted((r["build"], r["name"]) for r in rows)

    assert names(project="alpha", kind="archive") == [(a, "app.tar"), (b, "app.tar")]
    assert names(project="alpha", ref="dev", kind="archive") == [(b, "app.tar")]
    assert names(commit="111111", kind="archive") == [(a, "app.tar")]
    assert {n for _, n in names(build=a)} == {
        "app.tar",
        "deliverable.json",
        "provenance.intoto.json",
    }
    assert names(name="lib.tar") == [(a + 2, "lib.tar")]
    row = env.http.get("/api/v1/artifacts", params={"build": a, "name": "app.tar"}).json()[0]
    assert row["digest"] == sha(b"A") and row["job_name"] == "package"
    assert env.http.get(row["url"]).content == b"A"  # the old download route still works
    got = env.cli("artifacts", "get", row["digest"], "-o", str(env.tmp / "app.tar"))
    assert got.returncode == 0 and "verified" in got.stdout, got.stderr
    assert (env.tmp / "app.tar").read_bytes() == b"A"
    missing = env.cli("artifacts", "get", "sha256:" + "0" * 64, "-o", str(env.tmp / "no.tar"))
    assert missing.returncode != 0 and "not found" in missing.stderr
    assert not (env.tmp / "no.tar").exists()

    out = env.cli("artifacts", "ls", "--project", "alpha", "--ref", "dev", "--name", "app.tar")
    assert out.returncode == 0 and sha(b"B") in out.stdout and sha(b"A") not in out.stdout
    by_build = env.cli("artifacts", "ls", str(a))
    assert "deliverable" in by_build.stdout and "app.tar" in by_build.stdout


def test_provenance_is_signed_served_and_verifiable_offline(env: Env) -> None:
    build = env.seed(arts={"app.tar": b"app bytes", "docs.tar": b"docs"})
    pem = env.http.get("/api/v1/keys/provenance.pub")
    assert pem.status_code == 200 and pem.text.startswith("-----BEGIN PUBLIC KEY-----")
    key_file = env.tmp / "farm.pub"
    key_file.write_bytes(pem.content)
    resp = env.http.get(f"/api/v1/builds/{build}/provenance")
    assert resp.status_code == 200
    envelope = resp.json()
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    prov_file = env.tmp / "prov.json"
    prov_file.write_text(resp.text)

    for source in (str(prov_file), str(build)):
        ok = env.cli("artifacts", "verify", "--provenance", source, "--key", str(key_file))
        assert ok.returncode == 0, ok.stderr
        assert "signature: ok" in ok.stdout and "3 subject(s) match" in ok.stdout
    one = env.cli("artifacts", "verify", sha(b"docs"), "--provenance", str(build))
    assert one.returncode == 0 and "1 subject(s)" in one.stdout
    plain = env.cli("artifacts", "verify", sha(b"app bytes"))
    assert plain.returncode == 0 and "verified (9 bytes)" in plain.stdout

    # A statement signed by another key, or edited, is refused.
    forged = dict(envelope)
    forged["payload"] = envelope["payload"][:-8] + "AAAAAAA="
    prov_file.write_text(json.dumps(forged))
    bad = env.cli("artifacts", "verify", "--provenance", str(prov_file), "--key", str(key_file))
    assert bad.returncode == 2 and "error:" in bad.stderr

    # An artifact whose bytes changed on disk never verifies.
    path = env.blobs.path_for(sha(b"docs"))
    assert path is not None
    path.write_bytes(b"DOCS")
    broken = env.cli("artifacts", "verify", "--provenance", str(build), "--key", str(key_file))
    assert broken.returncode == 2 and "corrupted" in broken.stderr

    missing = env.http.get(f"/api/v1/builds/{env.seed(status='failed')}/provenance")
    assert missing.status_code == 404 and "only for successful builds" in missing.json()["detail"]


def _age(blobs: FilesystemBlobStore, digest: str, seconds: float = 7200) -> None:
    path = blobs.path_for(digest)
    assert path is not None
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_gc_marks_every_reference_and_sweeps_the_rest(env: Env) -> None:
    # Build 1 (old, not latest, not released): its expired artifact loses its reference.
    env.seed(ref="main", arts={"old.tar": b"expired"}, expires_at=PAST)
    # Build 2: released; its expired artifact is kept.
    released = env.seed(ref="rel", arts={"rel.tar": b"released"}, expires_at=PAST)
    env.seed(ref="rel", status="failed")
    assert env.http.post("/api/v1/releases", json={"build": released, "version": "1"}).is_success
    # Build 4: the latest green of main; its expired artifact is kept.
    env.seed(ref="main", arts={"green.tar": b"latest green"}, expires_at=PAST)
    orphan_old = env.blobs.put_stream(iter([b"orphan old"])).digest
    orphan_young = env.blobs.put_stream(iter([b"orphan young"])).digest
    cached = env.blobs.put_stream(iter([b"a cache archive"])).digest
    with env.app.state.store._tx() as s:
        s.execute(
            insert(CacheRow).values(
                project="demo", key="k", digest=cached, size=15, updated_at=datetime.now(UTC)
            )
        )
    session = env.blobs.start_upload()
    env.blobs.upload_chunk(session, 0, iter([b"in flight"]))
    for digest in env.blobs.iter_digests():
        if digest != orphan_young:
            _age(env.blobs, digest)

    dry = env.http.post("/api/v1/admin/gc", params={"dry_run": "true"}).json()
    assert dry["dry_run"] and sorted(dry["digests"]) == sorted([sha(b"expired"), orphan_old])
    assert dry["swept_bytes"] == len(b"expired") + len(b"orphan old")
    assert env.blobs.has(orphan_old)  # a dry run deletes nothing

    out = env.cli("gc")
    assert out.returncode == 0, out.stderr
    assert "swept 2 blob(s), 17 bytes" in out.stdout and "1 younger than 3600s" in out.stdout
    assert not env.blobs.has(orphan_old) and not env.blobs.has(sha(b"expired"))
    for kept in (sha(b"released"), sha(b"latest green"), cached, orphan_young):
        assert env.blobs.has(kept)
    assert env.blobs.upload_status(session) == len(b"in flight")  # sessions untouched

    zero = env.cli("gc", "--grace", "0", "--json")
    assert json.loads(zero.stdout)["digests"] == [orphan_young]


def test_artifact_whose_blob_vanished_is_a_clear_error(env: Env) -> None:
    build = env.seed(arts={"gone.tar": b"soon gone"})
    path = env.blobs.path_for(sha(b"soon gone"))
    assert path is not None
    path.unlink()
    resp = env.http.get(f"/api/v1/artifacts/{sha(b'soon gone')}")
    assert resp.status_code == 404 and "not found" in resp.json()["detail"]
    out = env.cli("artifacts", "verify", "--provenance", str(build))
    assert out.returncode == 2 and "not found" in out.stderr
    report = env.http.post("/api/v1/admin/gc", params={"grace": 0}).json()
    assert report["swept"] == 0  # everything left is still referenced
