"""Issue 10: how far one coordinator and its workers go, and where the time goes.

Four parts, each on a private farm (redis-server, one `farm api`, N `farm worker`
processes with the threads pool) on 127.0.0.1; every build is submitted with
``no_cache`` so every job runs:

1. throughput: 200 jobs of `true` on farm/busybox with 1, 2 and 4 worker processes
   of 2 slots each; the jobs' timelines and the CPU each process used say where it
   saturates; a plain `docker run --rm` floor at the same concurrency beside it;
2. the coordinator + Celery alone: 2,000 jobs with ``FARM_EXECUTOR=noop`` (no
   container), 1 and 2 worker processes;
3. a 10,000-job pipeline submitted then canceled while the noop workers run, with
   ``GET /api/v1/builds/{id}`` of another build timed meanwhile;
4. what one finished job costs the coordinator: this script plays a worker over HTTP
   (worker token, claim then finish) on a 50-job and a 5,000-job pipeline of
   independent jobs, on a farm with no worker process.

    flock /tmp/farm-bench.lock .venv/bin/python -m bench.scale_bench [--parts 1,2,3,4]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.celery_floor import floor as celery_floor
from bench.report import update_section
from farm.domain.messages import PROTOCOL_VERSION
from farm.domain.timeline import SLICES, slices
from tests.conftest import farm_env
from tests.farmtest import BUSYBOX, FINAL, Farm, free_port, make_repo, wait_for

TICK = os.sysconf("SC_CLK_TCK")


# --- a farm with N worker processes ---------------------------------------------------


@dataclass
class ScaleFarm:
    farm: Farm
    redis: subprocess.Popen[bytes]
    workers: int
    slots: int  # per worker process
    pids: dict[str, list[int]] = field(default_factory=dict)

    def stop(self) -> None:
        for p in reversed(self.farm.procs):
            p.stop()
        self.redis.terminate()
        self.redis.wait(10)


def start(root: Path, workers: int, slots: int, env: dict[str, str] | None = None) -> ScaleFarm:
    root.mkdir(parents=True, exist_ok=True)
    port, rport = free_port(), free_port()
    redis = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(rport), "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    farm = Farm(
        url=f"http://127.0.0.1:{port}",
        env={
            **farm_env(root, f"redis://127.0.0.1:{rport}/0", port),
            "FARM_LOG_LEVEL": "WARNING",
            "FARM_PIPELINE_MAX_JOBS": "20000",  # the default (2,000) refuses parts 3 and 4
            **(env or {}),
        },
        data_dir=root,
    )
    sf = ScaleFarm(farm, redis, workers, slots)
    api = farm.start("api", "api")
    wait_for(lambda: _ok(farm), 60, "API")
    sf.pids = {"api": [api.popen.pid], "redis": [redis.pid], "workers": []}
    for i in range(workers):
        name = f"scale{i}@local"
        w = farm.start(
            f"worker-{i}", "worker", "--concurrency", str(slots), "--name", name,
            extra_env={"FARM_WORKER_NAME": name},
        )  # fmt: skip
        sf.pids["workers"].append(w.popen.pid)
        # At FARM_LOG_LEVEL=WARNING the worker logs no "ready": ask the API who is there.
        wait_for(lambda name=name: _serves(farm, name), 60, "worker")
    return sf


def _serves(farm: Farm, name: str) -> bool:
    """Whether worker ``name`` is ready (its first heartbeat comes once Celery is)."""
    with farm.http as h:
        return name in {w["name"] for w in h.get("/api/v1/workers").json()}


def _ok(farm: Farm) -> bool:
    try:
        return farm.http.get("/healthz").status_code == 200
    except Exception:
        return False


# --- CPU accounting from /proc ----------------------------------------------------------


def _cpu(pid: int) -> float:
    """CPU seconds of a process and its reaped children (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:15]) / TICK


def _by_name(*names: str) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().strip() in names:
                    out.append(int(d.name))
            except OSError:
                pass
    return out


def _machine_busy() -> float:
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = parts[3] + parts[4]
    return (sum(parts[:8]) - idle) / TICK


@contextmanager
def cpu_meter(sf: ScaleFarm, out: dict[str, float]) -> Iterator[None]:
    groups = {**sf.pids, "dockerd + containerd": _by_name("dockerd", "containerd")}

    def snap() -> dict[str, float]:
        s = {k: sum(_cpu(p) for p in pids) for k, pids in groups.items()}
        s["machine"] = _machine_busy()
        return s

    before, t0 = snap(), time.perf_counter()
    yield
    after, wall = snap(), time.perf_counter() - t0
    for k in after:
        out[k] = (after[k] - before[k]) / wall  # cores busy on average
    out["rest"] = out["machine"] - sum(v for k, v in out.items() if k not in ("machine",))


def cpu_line(cpu: dict[str, float]) -> str:
    order = ["api", "workers", "redis", "dockerd + containerd", "rest", "machine"]
    return ", ".join(f"{k} {cpu[k]:.2f}" for k in order if k in cpu)


# --- pipelines and runs -----------------------------------------------------------------


def flat(n: int, script: str = "'true'", prefix: str = "j") -> str:
    body = [f"image: {BUSYBOX}"]
    body += [f"{prefix}{i:05d}:\n  needs: []\n  script: [{script}]" for i in range(n)]
    return "\n".join(body) + "\n"


def run_build(farm: Farm, repo: Path, timeout: float = 900) -> tuple[float, float, dict[str, Any]]:
    """(submit answered, submit → every job final, the build)."""
    with farm.http as h:
        t0 = time.perf_counter()
        resp = h.post("/api/v1/builds", json={"repo": str(repo), "no_cache": True}, timeout=300)
        submit = time.perf_counter() - t0
        assert resp.status_code == 201, resp.text
        build_id = resp.json()["id"]
        deadline = time.monotonic() + timeout
        while True:  # the build's status only: a 2,000-job document is not free to poll
            status = h.get(f"/api/v1/builds/{build_id}?jobs=false").json()["status"]
            if status in FINAL:
                wall = time.perf_counter() - t0
                break
            assert time.monotonic() < deadline, f"build {build_id} still {status}"
            time.sleep(0.25)
        done = h.get(f"/api/v1/builds/{build_id}").json()
    return submit, wall, dict(done)


def raw_docker_rate(n: int, concurrency: int) -> float:
    def one(_: int) -> None:
        subprocess.run(
            ["docker", "run", "--rm", "--network", "none", BUSYBOX, "true"],
            check=True,
            capture_output=True,
        )

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(n)))
    return n / (time.perf_counter() - t0)


def slice_medians(jobs: Sequence[dict[str, Any]]) -> dict[str, float]:
    per: dict[str, list[float]] = {}
    for j in jobs:
        for name, v in slices(j.get("timeline") or {}).items():
            per.setdefault(name, []).append(v)
    return {k: statistics.median(v) for k, v in per.items()}


def in_slot(jobs: Sequence[dict[str, Any]]) -> float:
    """Seconds of slot time the jobs held: worker_claimed → report_sent, summed."""
    total = 0.0
    for j in jobs:
        t = j.get("timeline") or {}
        if "worker_claimed" in t and "report_sent" in t:
            total += t["report_sent"] - t["worker_claimed"]
    return total


def pct(values: Sequence[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


# --- part 1: container throughput ---------------------------------------------------------


def part_throughput(root: Path, jobs: int) -> str:
    repo = make_repo(root / "thr-repo", {".farm-ci.yml": flat(jobs)})
    warm = make_repo(root / "thr-warm", {".farm-ci.yml": flat(8)})
    rows, slice_rows, cpu_rows = [], [], []
    slots = 2
    for workers in (1, 2, 4):
        c = workers * slots
        floor = raw_docker_rate(max(20, 4 * c), c)
        sf = start(root / f"thr-{workers}", workers, slots)
        try:
            run_build(sf.farm, warm)
            cpu: dict[str, float] = {}
            with cpu_meter(sf, cpu):
                _, wall, done = run_build(sf.farm, repo)
        finally:
            sf.stop()
        assert done["status"] == "success", done["status"]
        rate = jobs / wall
        busy = in_slot(done["jobs"]) / (c * wall)
        med = slice_medians(done["jobs"])
        print(f"throughput {workers} proc: {rate:.2f} jobs/s, floor {floor:.2f}, cpu {cpu}")
        rows.append(
            f"| {workers} | {c} | {wall:.1f} s | **{rate:.2f}** | {floor:.2f} | "
            f"{rate / floor:.2f} | {busy * 100:.0f}% | {cpu['machine']:.2f} |"
        )
        slice_rows.append(
            f"| {workers} | "
            + " | ".join(f"{med[name] * 1000:.0f}" if name in med else "-" for name, _, _ in SLICES)
            + " |"
        )
        cpu_rows.append(f"| {workers} | {cpu_line(cpu)} |")
    head = " | ".join(name for name, _, _ in SLICES)
    return (
        f"### 1. Throughput: {jobs} jobs of `true` on `{BUSYBOX}`\n\n"
        f"Each worker process runs {slots} slots (threads pool): one per core, so 4 "
        "processes put 8 containers at once on 2 cores. Wall = submit → every job final. "
        "Floor: `docker run --rm --network none … true` at the same concurrency, just "
        "before. Slots busy = Σ(worker_claimed → report_sent) / (slots x wall).\n\n"
        "| worker processes | slots | wall | jobs/s | floor containers/s | farm / floor "
        "| slots busy | machine CPU (cores) |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        + "\n".join(rows)
        + "\n\nMedian of each timeline slice over the jobs (ms; `dispatch` includes the "
        "wait for a free slot):\n\n"
        f"| processes | {head} |\n|---:|"
        + "---:|" * len(SLICES)
        + "\n"
        + "\n".join(slice_rows)
        + "\n\nCPU used during the 200-job build (cores, average; `rest` = container "
        "shims, runc, the containers and other tenants of this shared host):\n\n"
        "| processes | CPU |\n|---:|---|\n" + "\n".join(cpu_rows) + "\n"
    )


# --- part 2 + 3: noop jobs, then a 10,000-job pipeline --------------------------------------


@dataclass
class Probe:
    """GET /api/v1/builds/{id} every ``every`` s while it runs; at most ``cap`` requests."""

    farm: Farm
    build_id: int
    every: float = 0.02
    cap: int = 2000
    times: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Probe:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        with self.farm.http as h:
            while not self._stop.is_set() and len(self.times) < self.cap:
                t0 = time.perf_counter()
                h.get(f"/api/v1/builds/{self.build_id}").raise_for_status()
                self.times.append(time.perf_counter() - t0)
                self._stop.wait(self.every)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()


# (worker processes, slots each) of part 2; part 3 runs on the last. No-op jobs wait on
# the API, not on a CPU: more slots per process let more of their calls share requests.
NOOP_FARMS = ((1, 4), (1, 8), (2, 8))


def part_noop(root: Path, jobs: int, big: int) -> tuple[str, str]:
    repo = make_repo(root / "noop-repo", {".farm-ci.yml": flat(jobs)})
    warm = make_repo(root / "noop-warm", {".farm-ci.yml": flat(20)})
    small = make_repo(root / "noop-small", {".farm-ci.yml": flat(3)})
    big_repo = make_repo(root / "noop-big", {".farm-ci.yml": flat(big)})
    celery_n = 2000
    cel = celery_floor(celery_n, 4)
    print(f"celery alone: {cel}")
    rows, big_text = [], ""
    per_job: dict[str, dict[str, float]] = {}
    floor = 0.0
    for workers, slots in NOOP_FARMS:
        sf = start(root / f"noop-{workers}x{slots}", workers, slots, {"FARM_EXECUTOR": "noop"})
        try:
            run_build(sf.farm, warm)
            cpu: dict[str, float] = {}
            with cpu_meter(sf, cpu):
                submit, wall, done = run_build(sf.farm, repo)
            assert done["status"] == "success", done["status"]
            med = slice_medians(done["jobs"])
            rate = jobs / wall
            per_job[f"{workers} x {slots}"] = {
                k: cpu[k] * wall / jobs * 1000 for k in ("api", "workers") if k in cpu
            }
            if not floor:
                floor = request_floor(sf, done["id"])
            print(f"noop {workers}x{slots}: {rate:.1f} jobs/s, submit {submit:.2f}s, cpu {cpu}")
            rows.append(
                f"| {workers} | {workers * slots} | {submit:.2f} s | {wall:.2f} s | "
                f"**{rate:.0f}** ({'meets' if rate >= 200 else 'misses'} ≥ 200) | "
                f"{jobs / (wall - submit):.0f} | {med.get('report', 0) * 1000:.0f} ms | "
                f"{med.get('advance', 0) * 1000:.1f} ms | {cpu_line(cpu)} |"
            )
            if (workers, slots) == NOOP_FARMS[-1]:
                big_text = big_pipeline(sf, small, big_repo, big)
        finally:
            sf.stop()
    noop = (
        f"### 2. Coordinator + Celery alone: {jobs:,} jobs, `FARM_EXECUTOR=noop`\n\n"
        f"No container: each job is a Celery message, a claim and a finish report over "
        "HTTP (the job's one line of output rides with the report, protocol 3; a worker's "
        "slots that call at once share a request), the worker's durable spool and job dir. "
        "Slots are threads of a worker process. `FARM_LOG_LEVEL=WARNING`. Wall = submit → "
        "every job final (the submit included); `after submit` = jobs / (wall - submit). "
        "CPU in cores, average over the build.\n\n"
        "| worker processes | slots in all | submit | wall | jobs/s end to end "
        "| jobs/s after submit | report (median) | advance (median) | CPU (cores) |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|\n" + "\n".join(rows) + "\n\n"
        "CPU per job (ms): "
        + "; ".join(
            f"{w}: API {c.get('api', 0):.1f}, workers {c.get('workers', 0):.1f}"
            for w, c in per_job.items()
        )
        + f". The floor of one authenticated request that reads one row (`GET "
        f"/api/v1/builds/{{id}}?jobs=false`, 1,000 in a row on the idle farm): **{floor:.1f} "
        "ms** of API CPU; a job makes two calls (claim, finish), fewer requests when they "
        "share one, besides its Celery message and its database writes.\n\n"
        f"Celery alone, as farm configures it (`bench/celery_floor.py`: {celery_n:,} empty "
        "tasks, one worker process of 4 threads, task events on): "
        f"**{cel['rate']:.0f} tasks/s**; CPU per task {cel['publish']:.2f} ms to publish, "
        f"{cel['worker']:.2f} ms in the worker, {cel['redis']:.2f} ms in redis-server "
        f"(**{cel['publish'] + cel['worker'] + cel['redis']:.1f} ms** in all).\n"
    )
    return noop, big_text


def request_floor(sf: ScaleFarm, build_id: int, n: int = 1000) -> float:
    """API CPU milliseconds per minimal authenticated request."""
    api = sf.pids["api"][0]
    with sf.farm.http as h:
        for _ in range(50):  # warm: token cache, connections
            h.get(f"/api/v1/builds/{build_id}?jobs=false")
        before = _cpu(api)
        for _ in range(n):
            h.get(f"/api/v1/builds/{build_id}?jobs=false").raise_for_status()
        return (_cpu(api) - before) / n * 1000


def big_pipeline(sf: ScaleFarm, small: Path, big_repo: Path, n: int) -> str:
    farm = sf.farm
    _, _, other = run_build(farm, small)
    with farm.http as h:
        with Probe(farm, other["id"]) as p_sub:
            t0 = time.perf_counter()
            resp = h.post(
                "/api/v1/builds", json={"repo": str(big_repo), "no_cache": True}, timeout=300
            )
            submit = time.perf_counter() - t0
        assert resp.status_code == 201, resp.text
        build_id = resp.json()["id"]
        time.sleep(1.0)
        with Probe(farm, other["id"]) as p_can:
            t1 = time.perf_counter()
            cresp = h.post(f"/api/v1/builds/{build_id}/cancel", timeout=300)
            cancel = time.perf_counter() - t1
        assert cresp.status_code < 300, cresp.text
        status = f"/api/v1/builds/{build_id}?jobs=false"
        wait_for(lambda: h.get(status).json()["status"] in FINAL, 120, "the big build final")
        doc = h.get(f"/api/v1/builds/{build_id}").json()
    counts: dict[str, int] = {}
    for j in doc["jobs"]:
        counts[j["status"]] = counts.get(j["status"], 0) + 1
    print(f"big: submit {submit:.2f}s cancel {cancel:.2f}s {counts}")

    def probe_row(what: str, p: Probe, took: float) -> str:
        t = [x * 1000 for x in p.times]
        p99 = pct(t, 99)
        return (
            f"| {what} | {took:.2f} s ({'meets' if took < 5 else 'misses'} < 5 s) | {len(t)} "
            f"| {statistics.median(t):.1f} ms | **{p99:.1f} ms** "
            f"({'meets' if p99 < 100 else 'misses'} < 100) | {max(t):.1f} ms |"
        )

    states = ", ".join(f"{v:,} {k}" for k, v in sorted(counts.items()))
    return (
        f"### 3. A {n:,}-job pipeline: submit, cancel, the API meanwhile\n\n"
        f"On the part-2 farm (2 noop worker processes running, so jobs finish while the "
        f"submit and cancel run). `POST /api/v1/builds` of {n:,} independent jobs "
        "(→ 201), then 1 s later `POST /api/v1/builds/{id}/cancel`; meanwhile another "
        "thread times `GET /api/v1/builds/{id}` of a finished 3-job build every 20 ms "
        "(one request at a time, at most 2,000).\n\n"
        "| call | took | GETs | GET p50 | GET p99 | GET max |\n|---|---:|---:|---:|---:|---:|\n"
        + probe_row("submit (201)", p_sub, submit)
        + "\n"
        + probe_row("cancel", p_can, cancel)
        + f"\n\nThe big build ended `{doc['status']}`: {states}.\n"
    )


# --- part 4: one finish's cost against the pipeline's size ----------------------------------


def part_finish(root: Path, sizes: Sequence[int], sample: int, profile: Path | None = None) -> str:
    sf = start(root / "finish", 0, 1, {"FARM_STUCK_AFTER": "3600"})
    farm = sf.farm
    try:
        wtoken = (farm.data_dir / "tokens" / "worker.token").read_text().strip()
        worker = httpx.Client(
            base_url=farm.url, timeout=60, headers={"Authorization": f"Bearer {wtoken}"}
        )
        builds: dict[int, list[int]] = {}
        for n in sizes:
            repo = make_repo(root / f"finish-{n}", {".farm-ci.yml": flat(n)})
            build = farm.submit(repo, no_cache=True)
            builds[n] = [j["id"] for j in sorted(build["jobs"], key=lambda j: j["id"])]
        time.sleep(2)  # the watchdog pass sends what one advance left in the outbox
        claims: dict[int, list[float]] = {n: [] for n in sizes}
        finishes: dict[int, list[float]] = {n: [] for n in sizes}
        done: dict[int, list[int]] = {n: [] for n in sizes}
        k = min(sample, *(n - 1 for n in sizes))  # never the last job: no finalize
        for i in range(k):  # interleaved: the host's noise falls on every size alike
            for n in sizes:
                job_id = builds[n][i]
                t0 = time.perf_counter()
                r = worker.post(
                    f"/api/v1/worker/jobs/{job_id}/claim",
                    json={"protocol": PROTOCOL_VERSION, "attempt": 1, "worker": "player@bench"},
                )
                claims[n].append(time.perf_counter() - t0)
                assert r.status_code == 200, r.text
                job_token = r.json()["job_token"]
                now = time.time()
                body = {
                    "protocol": PROTOCOL_VERSION, "attempt": 1, "job_token": job_token,
                    "exit_code": 0,
                    "timeline": {"worker_claimed": now, "report_sent": now},
                }  # fmt: skip
                t0 = time.perf_counter()
                r = worker.post(f"/api/v1/worker/jobs/{job_id}/finish", json=body)
                finishes[n].append(time.perf_counter() - t0)
                assert r.status_code == 200 and r.json()["status"] == "success", r.text
                done[n].append(job_id)
        if profile is not None:  # py-spy on the API while it takes more of the big build's
            spy = subprocess.Popen(
                ["py-spy", "record", "-p", str(sf.pids["api"][0]), "-r", "250", "--format",
                 "raw", "-o", str(profile), "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(1)
            for job_id in builds[sizes[-1]][k : k + 60]:
                r = worker.post(
                    f"/api/v1/worker/jobs/{job_id}/claim",
                    json={"protocol": PROTOCOL_VERSION, "attempt": 1, "worker": "player@bench"},
                )
                body = {
                    "protocol": PROTOCOL_VERSION, "attempt": 1,
                    "job_token": r.json()["job_token"], "exit_code": 0,
                }  # fmt: skip
                worker.post(f"/api/v1/worker/jobs/{job_id}/finish", json=body)
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        advance: dict[int, list[float]] = {n: [] for n in sizes}
        with farm.http as h:
            for n in sizes:
                for job_id in done[n]:
                    t = h.get(f"/api/v1/jobs/{job_id}").json().get("timeline") or {}
                    if "reported" in t and "next_dispatched" in t:
                        advance[n].append(t["next_dispatched"] - t["reported"])
        worker.close()
    finally:
        sf.stop()
    skip = max(1, k // 10)  # the first calls warm caches up (the build's shape)
    med = {
        n: {
            "claim": statistics.median(claims[n][skip:]),
            "finish": statistics.median(finishes[n][skip:]),
            "advance": statistics.median(advance[n][skip:]) if advance[n][skip:] else 0.0,
        }
        for n in sizes
    }
    small, large = sizes[0], sizes[-1]
    rows = [
        f"| {n:,} | {med[n]['claim'] * 1000:.1f} ms | {med[n]['finish'] * 1000:.1f} ms | "
        f"{med[n]['advance'] * 1000:.1f} ms | {pct(finishes[n][skip:], 90) * 1000:.1f} ms |"
        for n in sizes
    ]
    ratio = {key: med[large][key] / med[small][key] for key in ("claim", "finish", "advance")}
    print(f"finish: {med} ratio {ratio}")
    return (
        f"### 4. One finished job's cost against the pipeline's size\n\n"
        f"A farm with no worker process; this script plays the worker over HTTP with the "
        f"worker token: claim (→ assignment) then finish (exit 0) of {k} jobs of each build, "
        "interleaved between the builds, never a build's last job (no finalize). Pipelines of "
        "independent jobs, so a finish makes no job ready: what it costs is bookkeeping. "
        "Claim and finish are the HTTP round trips on 127.0.0.1 (the server's time plus "
        "≈ 1 ms of client and HTTP); `advance` is the timeline's reported → "
        "next_dispatched, the server-side DAG step inside the finish. Medians, first "
        f"{skip} calls dropped.\n\n"
        "| jobs in the build | claim | finish | advance | finish p90 |\n"
        "|---:|---:|---:|---:|---:|\n" + "\n".join(rows) + "\n\n"
        f"{large:,} / {small:,} jobs: claim **{ratio['claim']:.2f}x**, finish "
        f"**{ratio['finish']:.2f}x** ({'meets' if ratio['finish'] <= 2 else 'misses'} ≤ 2x), "
        f"advance {ratio['advance']:.2f}x.\n"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", default="1,2,3,4")
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--noop-jobs", type=int, default=2000)
    ap.add_argument("--big", type=int, default=10_000)
    ap.add_argument("--sample", type=int, default=100)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--profile", type=Path, default=None, help="py-spy raw output (part 4)")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    out: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        steps: list[tuple[str, Callable[[], str]]] = []
        if "1" in parts:
            steps.append(("1", lambda: part_throughput(root, args.jobs)))
        if "2" in parts or "3" in parts:
            steps.append(("2", lambda: "\n".join(part_noop(root, args.noop_jobs, args.big))))
        if "4" in parts:
            steps.append(("4", lambda: part_finish(root, (50, 5000), args.sample, args.profile)))
        for _, step in steps:
            text = step()
            print(text)
            out.append(text)
    body = (
        "## Scale: throughput, the coordinator alone, big pipelines "
        "(`bench/scale_bench.py`, issue 10)\n\n"
        "Private farms on this 2-core host: redis-server, one `farm api` (SQLite), N "
        "`farm worker` processes (threads pool), `FARM_LOG_LEVEL=WARNING`; builds submitted "
        "with `no_cache`.\n\n"
        + "\n".join(out)
        + "\n"
        + (
            "**Where the time goes.** Containers (part 1): dockerd, containerd, the shims and "
            "runc take ≈ 1.4 of the 2 cores from 2 slots on, farm's own processes ≈ 0.25-0.45; "
            "more slots only stretch `create`, so add hosts, not slots (a runtime swap was "
            "tried: crun is ≈ 10 % cheaper per container here and refuses this host's hybrid "
            "cgroups). Without containers (part 2) a job now costs ≈ 3-4 ms of API CPU and "
            "≈ 4-6 ms of worker CPU (it was ≈ 6-9 and ≈ 7-9 ms at the start of the last "
            "stop). Of the worker's, about 40 % is Celery's own loop (taking the message off "
            "Redis, kombu's unacked-message bookkeeping for late acks, the ack), about 30 % "
            "the HTTP client (claim, finish) and the rest farm's work: the durable spool, the "
            "job dir (the snapshot unpacked, main.sh), the log stream. Of the API's, about 40 "
            "% is uvicorn and FastAPI around each request, about a third the SQL of the claim "
            "and the finish (one write transaction each) and the DAG step, and ≈ 0.25 ms the "
            "Celery publish of the next job. Both processes sit below a core each (the GIL), "
            "and the machine is ≈ 15-30 % idle: the chain is still partly bound by latency, "
            "which is why 8 slots per worker process beat 4 and two processes beat one. The "
            "host's speed moves by a quarter within minutes (the same code gave 170-215 jobs/s "
            "on 2 x 8 slots in one half hour); compare rows of one run. What closed the gap to "
            "200 jobs/s this stop: a worker's slots that call at once share one request "
            "(`/api/v1/worker/claims`, `/reports`: group commit, the first call never waits) "
            "and a batch of reports advances each build once; the claim's and finish's SQL "
            "statements are built once (building them and SQLAlchemy's cache key of each new "
            "one cost more than SQLite did); Flower's task events, the workers' and the API's "
            "task-sent, go out in batches every 100 ms instead of a publish per event; one "
            "timer thread per worker runs the attempts' lease renewals and starts a log "
            "flusher only for jobs that outlive 0.3 s (two threads per attempt before); a job "
            "creates fewer files (the wrapper script is linked, no empty after.sh, the lease "
            "is a directory: creating a file costs this VM's ext4 80-600 µs); the worker's "
            "blob cache is counted once a minute, not on every job. Tried and dropped: "
            "delivering finish reports on sender threads so the slot is free at once (+5-12 % "
            "jobs/s within the noise, and 0.2-0.5 ms more CPU a job for the thread hand-off); "
            "a 2 ms linger before a batch (no gain); a 1 ms GIL switch interval (no change); "
            "a second API process and worker on the same database (no more jobs/s than one API "
            "with 2 x 8 slots). What was fixed before "
            "(first run of this script → last stop): a finish re-read and re-built the whole "
            "DAG (O(jobs): 6.8x slower on 5,000 jobs than on 50; now a per-build change "
            "counter and an in-memory view, 0.98x); a claim read the whole build; full "
            "garbage-collector passes over a big submit's objects stalled every request for "
            "120-180 ms (the API now freezes its start-up objects and collects less often); "
            "a 10,000-job document was serialized in one call that held the GIL; each job "
            "downloaded its build's snapshot again (workers now cache verified blobs by "
            "digest); every request paid a thread hop per FastAPI dependency (now async) and "
            "another to validate its answer again; a job's last output cost a request of its "
            "own (protocol 3 carries it in the finish report); the `next_dispatched` timeline "
            "mark was a write transaction of its own per job (now batched); log writes and "
            "build reads loaded ORM rows; kombu built a Redis client for every message it "
            "published; a canceled 10,000-job build was read whole for the build-finished "
            "hooks; Celery logged two INFO lines per task although `FARM_LOG_LEVEL=WARNING` "
            "was set."
        )
    )
    if not args.no_write:
        update_section("scale", body)


if __name__ == "__main__":
    main()
