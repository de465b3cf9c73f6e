"""Core-loop overhead: N trivial jobs through the farm vs a raw `docker run --rm` loop.

Both sides run the same containers (farm/busybox, `sleep 0.2`, network none) at the
same concurrency C, measured in the same run, so the ratio is what the farm adds
on top of the containers. Writes its section of docs/BENCHMARKS.md.

    .venv/bin/python -m bench.core_bench [--jobs 40] [--concurrency 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from bench.report import update_section
from tests.conftest import farm_env
from tests.farmtest import BUSYBOX, Farm, free_port, make_repo, wait_for

SLEEP = "0.2"


def raw_docker(jobs: int, concurrency: int) -> float:
    """Wall time of ``jobs`` `docker run --rm` calls, ``concurrency`` at a time."""

    def one(_: int) -> None:
        subprocess.run(
            ["docker", "run", "--rm", "--network", "none", BUSYBOX, "sleep", SLEEP],
            check=True,
            capture_output=True,
        )

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(jobs)))
    return time.perf_counter() - start


def pipeline(jobs: int) -> str:
    body = [f"image: {BUSYBOX}"]
    for i in range(jobs):
        body.append(f"job-{i:03d}:\n  needs: []\n  script: [sleep {SLEEP}]")
    return "\n".join(body) + "\n"


def start_farm(root: Path, concurrency: int) -> tuple[Farm, subprocess.Popen[bytes]]:
    root.mkdir(parents=True, exist_ok=True)
    port, rport = free_port(), free_port()
    redis = subprocess.Popen(
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(rport),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    farm = Farm(
        url=f"http://127.0.0.1:{port}",
        env=farm_env(root, f"redis://127.0.0.1:{rport}/0", port),
        data_dir=root,
    )
    farm.start("api", "api")
    wait_for(lambda: _ok(farm), 60, "API")
    farm.start(
        "worker",
        "worker",
        "--concurrency",
        str(concurrency),
        "--name",
        "bench@local",
        extra_env={"FARM_WORKER_NAME": "bench@local"},
    )
    wait_for(lambda: "ready" in (root / "worker.log").read_text(errors="replace"), 60, "worker")
    return farm, redis


def _ok(farm: Farm) -> bool:
    try:
        return farm.http.get("/healthz").status_code == 200
    except Exception:
        return False


def farm_round(farm: Farm, repo: Path) -> tuple[float, float]:
    """(submit → build finished, submit → first job started) in seconds."""
    t0 = time.time()
    build = farm.submit(repo, no_cache=True)  # every round runs its containers (issue 11)
    done = farm.wait(build["id"], timeout=600)
    wall = time.time() - t0
    assert done["status"] == "success", done["status"]
    first = min(datetime.fromisoformat(j["started_at"]).timestamp() for j in done["jobs"])
    return wall, first - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=40)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    n, c = args.jobs, args.concurrency
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        repo = make_repo(root / "repo", {".farm-ci.yml": pipeline(n)})
        farm, redis = start_farm(root / "farm", c)
        try:
            raw_docker(c, c)  # warm the image and dockerd
            farm_round(farm, repo)
            raws, walls, firsts = [], [], []
            for _ in range(args.rounds):  # interleave so noise hits both sides alike
                raws.append(raw_docker(n, c))
                wall, first = farm_round(farm, repo)
                walls.append(wall)
                firsts.append(first)
        finally:
            for p in reversed(farm.procs):
                p.stop()
            redis.terminate()
    raw, wall = statistics.median(raws), statistics.median(walls)
    ratio = wall / raw
    per_job = (wall - raw) * c / n
    body = (
        "## Core loop: farm vs raw `docker run --rm`\n\n"
        f"{n} jobs of `sleep {SLEEP}` on `{BUSYBOX}`, concurrency {c} (one worker, "
        f"{c} slots), median of {args.rounds} interleaved rounds.\n\n"
        "| measure | value |\n|---|---:|\n"
        f"| raw `docker run --rm` loop, wall | {raw:.2f} s |\n"
        f"| farm, submit → build finished | {wall:.2f} s |\n"
        f"| **ratio farm / raw** (target ≤ 1.25) | **{ratio:.2f}** |\n"
        f"| submit → first job started (p50) | {statistics.median(firsts) * 1000:.0f} ms |\n"
        f"| overhead per job ((farm - raw) * C / N) | {per_job * 1000:.0f} ms |\n"
        f"| rounds, raw (s) | {', '.join(f'{x:.2f}' for x in raws)} |\n"
        f"| rounds, farm (s) | {', '.join(f'{x:.2f}' for x in walls)} |\n"
    )
    print(body)
    update_section("core", body)


if __name__ == "__main__":
    main()
