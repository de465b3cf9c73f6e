"""Celery alone, configured as farm configures it: the floor under ``scale_bench`` part 2.

An app made by ``farm.worker.app.make_celery`` (Redis broker, late acks, no prefetch,
task events on for Flower, the task-sent event too) with one task that does nothing but
count itself done; one worker process of the threads pool, ``-E``, as ``farm worker``
runs it. ``n`` tasks are published from this process; CPU is read from /proc for the
publisher (this process), the worker and redis-server.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import redis

from tests.farmtest import free_port, wait_for

REPO = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:13]) / TICK


def floor(n: int = 2000, slots: int = 4) -> dict[str, float]:
    """Tasks per second and CPU milliseconds per task: publish, worker, redis."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    server = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    env = {**os.environ, "FLOOR_BROKER": url, "PYTHONPATH": str(REPO)}
    worker: subprocess.Popen[bytes] | None = None
    try:
        wait_for(lambda: _pings(url), 20, "redis")
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "bench.celery_floor_app", "worker",
             "-P", "threads", "-c", str(slots), "-E", "-Q", "farm", "--without-mingle",
             "--without-gossip", "--disable-prefetch", "--loglevel=WARNING"],
            env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.environ["FLOOR_BROKER"] = url
        from bench.celery_floor_app import app

        client = redis.Redis.from_url(url)
        app.send_task("bench.floor", args=(0,), queue="farm")  # the worker is up once
        wait_for(lambda: int(client.get("floor:done") or 0) == 1, 60, "celery worker")
        me, w, r = os.getpid(), worker.pid, server.pid
        c0 = (_cpu(me), _cpu(w), _cpu(r))
        t0 = time.perf_counter()
        for i in range(n):
            app.send_task("bench.floor", args=(i,), queue="farm")
        published = _cpu(me)
        wait_for(lambda: int(client.get("floor:done") or 0) == n + 1, 300, "tasks")
        wall = time.perf_counter() - t0
        c1 = (published, _cpu(w), _cpu(r))
        ms = [(b - a) / n * 1000 for a, b in zip(c0, c1, strict=True)]
        return {"rate": n / wall, "publish": ms[0], "worker": ms[1], "redis": ms[2]}
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)
        server.terminate()
        server.wait(10)


def _pings(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url).ping())
    except redis.ConnectionError:
        return False


if __name__ == "__main__":
    print(floor())
