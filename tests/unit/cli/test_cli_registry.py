"""`farm release`, `farm artifacts`, `farm gc` against the real API."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tests.unit.cli.conftest import Farm, LiveApi, one_line


def test_release_create_ls_show_delete(
    farm: Farm, green: dict[str, Any], live_api: LiveApi, project: Path
) -> None:
    name, build_id = green["project"], green["id"]
    created = farm("release", "create", str(build_id), "--version", "1.0.0")
    assert created.exit_code == 0, created.stderr
    assert created.stdout.strip() == (
        f"released: {name} 1.0.0 = build {build_id} ({green['commit']})"
    )
    again = farm("release", "create", str(build_id), "--version", "1.0.0", "--project", name)
    assert again.exit_code == 0 and again.stdout.startswith("already released: ")

    listed = farm("release", "ls", "--project", name)
    assert listed.exit_code == 0
    line = one_line(listed.stdout)
    assert line.split()[:4] == [name, "1.0.0", "build", str(build_id)]
    assert green["deliverable"]["digest"] in line
    rows = json.loads(farm("release", "ls", "--project", name, "--json").stdout)
    assert [(r["version"], r["build"]) for r in rows] == [("1.0.0", build_id)]
    shown = json.loads(farm("release", "show", name, "1.0.0").stdout)
    assert shown == rows[0]

    referenced = farm("release", "delete", name, "1.0.0")
    assert referenced.exit_code != 0 and "latest release" in one_line(referenced.stderr)
    newer = live_api.worker.run_build(live_api.submit(project)["id"])
    doc = json.loads(
        farm("release", "create", str(newer["id"]), "--version", "1.1", "--json").stdout
    )
    assert doc["version"] == "1.1" and doc["build"] == newer["id"]
    deleted = farm("release", "delete", name, "1.0.0")
    assert deleted.exit_code == 0 and deleted.stdout.strip() == f"deleted release {name} 1.0.0"


def test_release_of_a_failed_build_is_refused(farm: Farm, live_api: LiveApi, project: Path) -> None:
    red = live_api.worker.run_build(live_api.submit(project)["id"], {"compile": 1})
    result = farm("release", "create", str(red["id"]), "--version", "1.0.0")
    assert result.exit_code != 0
    assert "only a successful build can be released" in one_line(result.stderr)


def test_artifacts_ls_and_get(farm: Farm, green: dict[str, Any], tmp_path: Path) -> None:
    build_id = green["id"]
    listed = farm("artifacts", "ls", str(build_id))
    assert listed.exit_code == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == 3  # the archive, the deliverable, the provenance
    [app] = [line for line in lines if line.endswith("app  (archive)")]
    digest = app.split()[0]
    assert f"#{build_id} {green['project']}@main {green['commit'][:10]}  compile" in app

    rows = json.loads(
        farm("artifacts", "ls", "--project", green["project"], "--kind", "archive", "--json").stdout
    )
    assert [r["digest"] for r in rows] == [digest]
    assert farm("artifacts", "ls", "--project", green["project"], "--name", "zzz").stdout == ""

    out = tmp_path / "app.bin"
    got = farm("artifacts", "get", digest, "-o", str(out))
    assert got.exit_code == 0, got.stderr
    assert got.stdout.strip() == f"{out}: {digest} verified"
    assert out.read_bytes() == b"the app\n"
    assert "sha256:" + hashlib.sha256(out.read_bytes()).hexdigest() == digest
    verified = farm("artifacts", "verify", digest)
    assert verified.exit_code == 0 and verified.stdout.strip() == f"{digest}: verified (8 bytes)"


def test_gc_dry_run(farm: Farm, green: dict[str, Any], live_api: LiveApi) -> None:
    live_api.worker.upload(b"an unreferenced blob " + str(green["id"]).encode())
    report = json.loads(farm("gc", "--dry-run", "--grace", "0", "--json").stdout)
    assert report["dry_run"] is True and report["grace_seconds"] == 0
    assert report["swept"] >= 1 and report["referenced"] >= 4
    text = farm("gc", "--dry-run")
    assert text.exit_code == 0
    assert one_line(text.stdout).startswith("would sweep 0 blob(s), 0 bytes; kept ")
