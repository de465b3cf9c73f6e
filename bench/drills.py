"""Reliability drills: what a build farm must survive, measured on a private farm.

Each drill runs a real build on a farm of its own processes (redis-server, the API, two
workers on this host's dockerd), breaks something on purpose, and records: the build's
final state, jobs run twice (containers of one job alive at the same time, or an attempt
started after another already succeeded: must be 0), artifacts lost (an artifact the API
lists whose blob it cannot serve: must be 0), containers left behind (must be 0), and the
API's peak RSS and p99 latency of `GET /api/v1/builds/{id}` while the drill runs (a
bounded poller, 10 requests/s).

    .venv/bin/python -m bench.drills [--only NAME ...]

Writes its section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import httpx

from bench.report import update_section
from tests.conftest import farm_env
from tests.farmtest import BUSYBOX, FINAL, Farm, Proc, free_port, make_repo, wait_for

SLOW_JOB = f"""\
image: {BUSYBOX}
work:
  script:
    - for i in 1 2 3 4 5 6 7 8; do echo "line $i"; sleep 1; done
    - mkdir -p out && echo done > out/result
  artifacts:
    paths: [out/]
"""


@dataclass
class Drill:
    """One drill's outcome, as the report shows it."""

    name: str
    what: str
    state: str = "?"
    twice: int = 0
    lost: int = 0
    left: int = 0
    rss_mb: float = 0.0
    p99_ms: float = 0.0
    note: str = ""


@dataclass
class Watch:
    """Docker events of one build's containers, and a latency poller on the API."""

    farm: Farm
    build_id: int = 0
    # (job, attempt) -> [start time, die time, exit code] of that attempt's container
    spans: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def poll(self) -> None:
        with httpx.Client(base_url=self.farm.url, timeout=10) as http:
            while not self.stop.wait(0.1) and len(self.latencies) < 5000:
                if not self.build_id:
                    continue
                t0 = time.perf_counter()
                with contextlib.suppress(httpx.HTTPError):
                    http.get(f"/api/v1/builds/{self.build_id}")
                    self.latencies.append(time.perf_counter() - t0)

    def events(self, client: docker.DockerClient) -> None:
        since = time.time()
        for ev in client.events(decode=True, since=since, filters={"label": "farm.job"}):
            if self.stop.is_set():
                return
            attrs = ev.get("Actor", {}).get("Attributes", {})
            key = (attrs.get("farm.job", "?"), attrs.get("farm.attempt", "?"))
            when = float(ev.get("time", time.time()))
            if ev.get("status") == "start":
                self.spans.setdefault(key, [when, 0.0, -1.0])
            elif ev.get("status") == "die" and key in self.spans:
                self.spans[key][1] = when
                self.spans[key][2] = float(attrs.get("exitCode", -1))

    def twice(self) -> int:
        """Runs of a job that should not have happened.

        Two attempts of one job whose containers lived at the same time, plus attempts
        started after an earlier attempt's container had already exited 0 (a finished
        run that was thrown away and run again).
        """
        by_job: dict[str, list[tuple[float, float, float]]] = {}
        for (job, _), (start, end, code) in self.spans.items():
            by_job.setdefault(job, []).append((start, end or time.time(), code))
        count = 0
        for runs in by_job.values():
            runs.sort()
            count += sum(1 for a, b in itertools.pairwise(runs) if b[0] < a[1] - 0.5)
            finished = [end for _, end, code in runs if code == 0]
            if finished:
                count += sum(1 for start, _, _ in runs if start > min(finished))
        return count


class Bench:
    """A private farm: redis-server, API, two workers; restartable pieces."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.rport = free_port()
        port = free_port()
        env = farm_env(root, f"redis://127.0.0.1:{self.rport}/0", port)
        self.farm = Farm(url=f"http://127.0.0.1:{port}", env=env, data_dir=root)
        self.redis: subprocess.Popen[bytes] | None = None
        self.api: Proc | None = None
        self.workers: list[Proc] = []
        self.worker_names: list[str] = []

    def start_redis(self) -> None:
        self.redis = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.rport),
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(lambda: _redis_up(self.rport), 20, "redis")

    def start_api(self) -> None:
        self.api = self.farm.start("api", "api")
        wait_for(self.healthy, 60, "API")

    def start_worker(self, n: int) -> Proc:
        name = f"drill-{n}-{self.rport}@local"
        proc = self.farm.start(
            f"worker-{n}", "worker", "--concurrency", "2", "--name", name,
            extra_env={"FARM_WORKER_NAME": name},
        )  # fmt: skip
        log = self.root / f"worker-{n}.log"
        wait_for(lambda: "ready" in log.read_text(errors="replace"), 60, "worker")
        self.worker_names.append(name)
        return proc

    def healthy(self) -> bool:
        try:
            return self.farm.http.get("/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    def up(self) -> None:
        self.start_redis()
        self.start_api()
        self.workers = [self.start_worker(1), self.start_worker(2)]

    def down(self) -> None:
        for proc in reversed(self.farm.procs):
            proc.stop()
        if self.redis is not None:
            self.redis.terminate()
            self.redis.wait(10)

    def peak_rss_mb(self) -> float:
        if self.api is None or self.api.popen.poll() is not None:
            return 0.0
        status = Path(f"/proc/{self.api.popen.pid}/status").read_text()
        line = next(x for x in status.splitlines() if x.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024


def _redis_up(port: int) -> bool:
    out = subprocess.run(
        ["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True, check=False
    )
    return out.stdout.strip() == "PONG"


@contextlib.contextmanager
def watching(bench: Bench, client: docker.DockerClient) -> Iterator[Watch]:
    watch = Watch(bench.farm)
    threads = [
        threading.Thread(target=watch.poll, daemon=True),
        threading.Thread(target=watch.events, args=(client,), daemon=True),
    ]
    for t in threads:
        t.start()
    try:
        yield watch
    finally:
        watch.stop.set()


def finish(bench: Bench, client: docker.DockerClient, drill: Drill, watch: Watch) -> Drill:
    """Fill the drill's figures once its build is final."""
    build = bench.farm.wait(watch.build_id, timeout=300) if watch.build_id else {}
    drill.state = build.get("status", drill.state)
    drill.twice = watch.twice()
    drill.lost = _lost_artifacts(bench.farm, build)
    time.sleep(1)
    drill.left = len(client.containers.list(all=True, filters={"label": "farm.job"}))
    drill.rss_mb = bench.peak_rss_mb()
    lat = sorted(watch.latencies)
    drill.p99_ms = lat[int(len(lat) * 0.99) - 1] * 1000 if len(lat) > 10 else 0.0
    return drill


def _lost_artifacts(farm: Farm, build: dict[str, Any]) -> int:
    lost = 0
    with farm.http as http:
        for job in build.get("jobs", []):
            for art in job.get("artifacts", []):
                if http.head(f"/api/v1/blobs/{art['digest']}").status_code != 200:
                    lost += 1
    return lost


def drill_worker_killed(bench: Bench, client: docker.DockerClient, repo: Path) -> Drill:
    drill = Drill("worker SIGKILL", "the worker running the job is SIGKILLed mid-job")
    with watching(bench, client) as watch:
        watch.build_id = bench.farm.submit(repo)["id"]
        job = bench.farm.wait_job(watch.build_id, "work", {"running"})
        victim = bench.workers[bench.worker_names.index(job["worker"])]
        os.kill(victim.popen.pid, signal.SIGKILL)
        victim.popen.wait(10)
        return finish(bench, client, drill, watch)


def drill_api_down(bench: Bench, client: docker.DockerClient, repo: Path) -> Drill:
    drill = Drill("API down 20 s", "the API is SIGKILLed mid-job and started 20 s later")
    with watching(bench, client) as watch:
        watch.build_id = bench.farm.submit(repo)["id"]
        bench.farm.wait_job(watch.build_id, "work", {"running"})
        assert bench.api is not None
        os.kill(bench.api.popen.pid, signal.SIGKILL)
        bench.api.popen.wait(10)
        time.sleep(20)
        bench.start_api()
        return finish(bench, client, drill, watch)


def drill_redis_restart(bench: Bench, client: docker.DockerClient, repo: Path) -> Drill:
    drill = Drill("Redis restart", "redis-server (no persistence) restarted while a job runs")
    with watching(bench, client) as watch:
        watch.build_id = bench.farm.submit(repo)["id"]
        bench.farm.wait_job(watch.build_id, "work", {"running"})
        assert bench.redis is not None
        bench.redis.terminate()
        bench.redis.wait(10)
        time.sleep(3)
        bench.start_redis()
        return finish(bench, client, drill, watch)


def drill_yaml_bomb(bench: Bench, client: docker.DockerClient, root: Path) -> Drill:
    drill = Drill("YAML bomb", "a 400-byte pipeline of nested anchors is submitted")
    lines = ['a0: &a0 ["x"]']
    for i in range(1, 9):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 9)}]")
    lines.append("bomb:\n  script: *a8")
    repo = make_repo(root / "bomb", {".farm-ci.yml": "\n".join(lines) + "\n"})
    with watching(bench, client) as watch, bench.farm.http as http:
        t0 = time.perf_counter()
        resp = http.post("/api/v1/builds", json={"repo": str(repo)}, timeout=600)
        took = time.perf_counter() - t0
        drill.state = f"refused {resp.status_code}" if resp.status_code >= 400 else "accepted"
        drill.note = f"answered in {took:.2f} s: {resp.json().get('detail', '')[:90]}"
        if resp.status_code < 400:
            watch.build_id = resp.json()["id"]
            return finish(bench, client, drill, watch)
    drill.rss_mb = bench.peak_rss_mb()
    return drill


def drill_big_cancel(bench: Bench, client: docker.DockerClient, root: Path) -> Drill:
    drill = Drill("2,000 jobs + cancel", "a 2,000-job pipeline is submitted, then canceled")
    jobs = "\n".join(f"j{i}:\n  needs: []\n  script: [sleep 1]" for i in range(2000))
    repo = make_repo(root / "big", {".farm-ci.yml": f"image: {BUSYBOX}\n{jobs}\n"})
    with watching(bench, client) as watch, bench.farm.http as http:
        t0 = time.perf_counter()
        resp = http.post("/api/v1/builds", json={"repo": str(repo)}, timeout=900)
        submit = time.perf_counter() - t0
        watch.build_id = resp.json()["id"]
        time.sleep(3)
        t1 = time.perf_counter()
        http.post(f"/api/v1/builds/{watch.build_id}/cancel", timeout=900)
        cancel = time.perf_counter() - t1
        drill.note = f"submit {submit:.1f} s, cancel {cancel:.1f} s"
        result = finish(bench, client, drill, watch)
        waiting = sum(
            1
            for j in bench.farm.build(watch.build_id)["jobs"]
            if j["status"] not in FINAL | {"skipped"}
        )
        result.note += f", {waiting} jobs not final afterwards"
        return result


def drill_setuid(bench: Bench, client: docker.DockerClient, root: Path) -> Drill:
    drill = Drill("setuid plant", "a job plants a setuid-root copy of a shell in its workspace")
    script = (  # bash -p keeps the euid a setuid bit gives (busybox would drop it)
        "image: farm/debian:bookworm\nplant:\n  script:\n"
        "    - cp /bin/bash rootsh\n    - chmod 4755 rootsh\n    - sleep 6\n"
    )
    repo = make_repo(root / "plant", {".farm-ci.yml": script})
    with watching(bench, client) as watch:
        watch.build_id = bench.farm.submit(repo)["id"]
        bench.farm.wait_job(watch.build_id, "plant", {"running"})
        time.sleep(2)
        found = list((bench.root / "work").rglob("rootsh"))
        usable = 0
        for path in found:
            out = subprocess.run(
                ["runuser", "-u", "nobody", "--", str(path), "-p", "-c", "id -u"],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            usable += out.stdout.strip() == "0"
        drill.note = (
            f"{len(found)} planted file(s) on the host, {usable} gave an unprivileged user euid 0"
        )
        return finish(bench, client, drill, watch)


DRILLS: dict[str, Callable[[Bench, docker.DockerClient, Path], Drill]] = {
    "worker": lambda b, c, r: drill_worker_killed(
        b, c, make_repo(r / "w", {".farm-ci.yml": SLOW_JOB})
    ),
    "api": lambda b, c, r: drill_api_down(b, c, make_repo(r / "a", {".farm-ci.yml": SLOW_JOB})),
    "redis": lambda b, c, r: drill_redis_restart(
        b, c, make_repo(r / "r", {".farm-ci.yml": SLOW_JOB})
    ),
    "bomb": drill_yaml_bomb,
    "big": drill_big_cancel,
    "setuid": drill_setuid,
}


def main() -> None:
    """Run the drills, print and record the table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(DRILLS), default=None)
    args = parser.parse_args()
    client = docker.from_env()
    results: list[Drill] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in args.only or list(DRILLS):
            bench = Bench(root / f"farm-{name}")
            bench.root.mkdir(parents=True)
            try:
                bench.up()
                results.append(DRILLS[name](bench, client, root / f"src-{name}"))
            except Exception as exc:  # a drill that breaks the bench is a finding too
                results.append(Drill(name, "", state="drill failed", note=str(exc)[:120]))
            finally:
                bench.down()
            print(results[-1])
    rows = "\n".join(
        f"| {d.name} | {d.what} | {d.state} | {d.twice} | {d.lost} | {d.left} | "
        f"{d.rss_mb:.0f} MB | {d.p99_ms:.0f} ms | {d.note} |"
        for d in results
    )
    p99s = [d.p99_ms for d in results if d.p99_ms]
    body = (
        "## Reliability drills\n\n"
        "`python -m bench.drills`: each drill on a private farm (redis-server, API, two "
        "workers with 2 slots each), a real build, something broken on purpose. *Twice*: "
        "containers of one job alive at once, or an attempt started after an earlier "
        "attempt's container had exited 0 (from Docker's events; must be 0). *Lost*: "
        "listed artifacts the API cannot serve (0). *Left*: farm containers left "
        "afterwards (0). RSS: the API's peak. "
        "p99: `GET /api/v1/builds/{id}` latency while the drill ran (10 requests/s).\n\n"
        "| drill | what | final state | twice | lost | left | API peak RSS | p99 status | notes |\n"
        "|---|---|---|---:|---:|---:|---:|---:|---|\n"
        f"{rows}\n"
        + (f"\nMedian p99 across drills: {statistics.median(p99s):.0f} ms.\n" if p99s else "")
    )
    print(body)
    update_section("drills", body)


if __name__ == "__main__":
    main()
