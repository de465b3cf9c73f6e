"""Trust on a real farm (API + Celery workers + Docker, auth on as by default).

The attacks from issue 12 are tried the way an attacker would: over HTTP, on the blob
data plane, and with the CLI's own token handling.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from farm.domain.messages import PROTOCOL_VERSION
from tests.farmtest import Farm, farm_cli, make_repo

PIPELINE = "job:\n  image: busybox\n  script: [echo built]\n"


def test_a_forged_claim_or_finish_is_refused_and_the_build_stays_honest(
    farm: Farm, tmp_path: Path
) -> None:
    repo = make_repo(
        tmp_path / "honest", {".farm-ci.yml": "job:\n  image: busybox\n  script: [exit 3]\n"}
    )
    build = farm.submit(repo)
    job = build["jobs"][0]["id"]
    forged = {
        "protocol": PROTOCOL_VERSION,
        "attempt": 1,
        "exit_code": 0,
        "message": "",
        "artifacts": [],
    }
    claim = {"protocol": PROTOCOL_VERSION, "attempt": 1, "worker": "evil"}
    with httpx.Client(base_url=farm.url, timeout=30) as anon:
        assert anon.post(f"/api/v1/worker/jobs/{job}/claim", json=claim).status_code == 401
        assert anon.post(f"/api/v1/worker/jobs/{job}/finish", json=forged).status_code == 401
    with farm.http as admin:  # a person's admin token is not a worker's
        assert admin.post(f"/api/v1/worker/jobs/{job}/claim", json=claim).status_code == 403
        assert admin.post(f"/api/v1/worker/jobs/{job}/finish", json=forged).status_code == 403
    worker_token = (farm.data_dir / "tokens" / "worker.token").read_text().strip()
    with httpx.Client(
        base_url=farm.url, timeout=30, headers={"Authorization": f"Bearer {worker_token}"}
    ) as thief:  # the workers' own token, but not the attempt's job token
        farm.wait_job(build["id"], "job", {"running", "failed"})
        answer = thief.post(f"/api/v1/worker/jobs/{job}/finish", json=forged)
        assert answer.status_code in (403, 200), answer.text
        if answer.status_code == 200:  # the real report got there first: nothing changed
            assert answer.json()["status"] == "failed"
    done = farm.wait(build["id"])
    assert done["status"] == "failed" and done["jobs"][0]["exit_code"] == 3, (done, farm.log(job))


def test_the_blob_data_plane_needs_a_token(farm: Farm, tmp_path: Path) -> None:
    with farm.http as admin:
        url = admin.get("/api/v1/registry/endpoints").json()["blob_data"]
        digest = "sha256:" + "0" * 64
        assert httpx.get(f"{url}/api/v1/blobs/{digest}", timeout=10).status_code == 401
        put = httpx.put(f"{url}/api/v1/blobs/{digest}", content=b"x", timeout=10)
        assert put.status_code == 401
        with_read = httpx.put(
            f"{url}/api/v1/blobs/{digest}",
            content=b"x",
            headers={"Authorization": f"Bearer {farm.token}"},
            timeout=10,
        )
        assert with_read.status_code == 403  # only workers upload


def test_token_cli_break_glass_scopes_and_revoke(farm: Farm, tmp_path: Path) -> None:
    made = farm_cli(
        farm.env, "token", "create", "--scope", "read", "--name", "dash", "--expires", "2h"
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("farm_") and "\n" not in token  # only the token on stdout
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=farm.url, timeout=30, headers=auth) as reader:
        assert reader.get("/api/v1/builds").status_code == 200
        refused = reader.post("/api/v1/builds", json={"repo": "https://example.invalid/x.git"})
        assert refused.status_code == 403 and "submit" in refused.json()["detail"]
    listed = farm_cli(farm.env, "token", "ls", "--json")
    assert token not in listed.stdout and '"dash"' in listed.stdout
    mine = next(t for t in json.loads(listed.stdout) if t["name"] == "dash")
    assert mine["prefix"] == token[:12] and mine["scopes"] == ["read"]
    ident = mine["id"]
    assert farm_cli(farm.env, "token", "revoke", str(ident)).returncode == 0
    deadline = time.monotonic() + 15  # the API caches a lookup for FARM_TOKEN_CACHE_SECONDS
    status = 200
    while time.monotonic() < deadline and status != 401:
        status = httpx.get(f"{farm.url}/api/v1/builds", headers=auth, timeout=10).status_code
        time.sleep(0.5)
    assert status == 401


def test_the_cli_says_one_line_about_a_bad_token(farm: Farm) -> None:
    env = {**farm.env, "FARM_TOKEN": "farm_not-a-real-token"}
    out = farm_cli(env, "--api", farm.url, "status", "1")
    assert out.returncode != 0
    assert out.stderr.strip() == "error: unknown API token", out.stderr


def test_no_auth_on_a_public_address_refuses_to_start(farm: Farm, tmp_path: Path) -> None:
    env = {**farm.env, "FARM_AUTH": "false", "FARM_DATA_DIR": str(tmp_path / "open")}
    out = farm_cli(env, "api", "--host", "0.0.0.0", "--port", "1", timeout=60)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: refusing to listen on 0.0.0.0 with FARM_AUTH=false"), out.stderr
