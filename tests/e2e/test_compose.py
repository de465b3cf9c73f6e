"""compose.yaml for real: redis, PostgreSQL, the API, Flower and three workers with
Debian's docker-compose 1.29 (``docker compose`` v2 when that is what is installed),
a build through it, and the three workers sharing its jobs. Slow (~1-2 min with the
images built; scripts/images.sh builds them offline)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.farmtest import free_port

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ("farm/worker:latest", "farm/redis:latest", "farm/postgres:latest")
PIPELINE = """
default:
  image: farm/busybox:latest  # local: no registry pull
work:
  parallel: 9
  script: [sleep 2, echo done]
"""

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(600)]


def _compose() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    pytest.fail("neither docker-compose nor docker compose: run scripts/bootstrap.sh")


@pytest.fixture
def compose_farm(tmp_path: Path, docker_client: object) -> Iterator[tuple[str, dict[str, str]]]:
    build = subprocess.run(
        ["bash", str(ROOT / "scripts/images.sh"), "worker", "redis", "postgres"],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    ports = {k: str(free_port()) for k in ("API", "REDIS", "PG", "FLOWER")}
    work = tmp_path / "work"
    work.mkdir()
    env = {
        **os.environ,
        "COMPOSE_PROJECT_NAME": f"farmt{uuid.uuid4().hex[:8]}",
        "FARM_API_PORT": ports["API"],
        "FARM_BLOB_PORT": str(free_port()),
        "FARM_REDIS_PORT": ports["REDIS"],
        "FARM_PG_PORT": ports["PG"],
        "FARM_FLOWER_PORT": ports["FLOWER"],
        "FARM_PG_PASSWORD": uuid.uuid4().hex,
        "FARM_WORK_DIR": str(work),
    }
    cmd = [*_compose(), "-f", str(ROOT / "compose.yaml")]
    up = subprocess.run(
        [*cmd, "up", "-d", "--scale", "worker=3"], env=env, capture_output=True, text=True
    )
    try:
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-3000:]
        yield f"http://127.0.0.1:{ports['API']}", {**env, "_cmd": " ".join(cmd)}
    finally:
        logs = subprocess.run(
            [*cmd, "logs", "--no-color", "--tail", "40"], env=env, capture_output=True, text=True
        )
        print(logs.stdout[-8000:])
        subprocess.run([*cmd, "down", "-v", "--timeout", "10"], env=env, capture_output=True)


def _token(cmd: str, env: dict[str, str]) -> str:
    out = subprocess.run(
        [*cmd.split(), "exec", "-T", "api", "cat", "/var/lib/farm/tokens/admin.token"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_compose_farm_runs_a_build_on_three_workers(
    compose_farm: tuple[str, dict[str, str]],
) -> None:
    url, env = compose_farm
    token = _token(env["_cmd"], env)
    h = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    deadline = time.monotonic() + 120
    while True:  # three workers' heartbeats
        workers = h.get("/api/v1/workers").json()
        if len(workers) >= 3:
            break
        assert time.monotonic() < deadline, workers
        time.sleep(1)
    assert len({w["name"] for w in workers}) == 3
    # The repo lives inside the API container (a local path needs the admin scope).
    repo = "/var/lib/farm/demo"
    script = (
        f"mkdir -p {repo} && cd {repo} && git init -q -b main && "
        f"printf '%s' \"$PIPELINE\" > .farm-ci.yml && git add -A && "
        "git -c user.name=t -c user.email=t@e.invalid commit -qm init"
    )
    made = subprocess.run(
        [
            *env["_cmd"].split(),
            "exec",
            "-T",
            "-e",
            f"PIPELINE={PIPELINE}",
            "api",
            "sh",
            "-c",
            script,
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    build = h.post("/api/v1/builds", json={"repo": repo, "ref": "main"})
    assert build.status_code == 201, build.text
    build_id = build.json()["id"]
    deadline = time.monotonic() + 180
    while True:
        doc = h.get(f"/api/v1/builds/{build_id}").json()
        if doc["status"] in ("success", "failed", "canceled"):
            break
        assert time.monotonic() < deadline, doc
        time.sleep(1)
    assert doc["status"] == "success", doc
    used = {j["worker"] for j in doc["jobs"]}
    print("jobs per worker:", {w: sum(j["worker"] == w for j in doc["jobs"]) for w in used})
    assert len(used) == 3, used  # 9 jobs of 2 s, one slot each: all three take some
    metrics = h.get("/metrics").text
    assert 'farm_worker_slots{state="total"} 3.0' in metrics
    flower = httpx.get(f"http://127.0.0.1:{env['FARM_FLOWER_PORT']}/metrics", timeout=10)
    assert flower.status_code == 200
