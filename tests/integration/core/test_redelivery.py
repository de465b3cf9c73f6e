"""Jobs never stay ``pending`` for good when the broker loses their message (issue 16, item 6).

Real processes: a redis-server, a farm API and a Celery worker of this test's own (the
session's Redis is shared by other tests, so it is never stopped), real containers. Redis
is stopped and started again by its PID; the API is never restarted: its watchdog pass
re-sends what the broker does not hold (coordinator/service.py, "The dispatch outbox").
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import farm_env
from tests.farmtest import BUSYBOX, Farm, Proc, free_port, make_repo, wait_for

PIPELINE = f"""
image: {BUSYBOX}
one: {{script: ["echo one"]}}
two: {{script: ["echo two"]}}
three: {{script: ["echo three"]}}
"""


@dataclass
class Broker:
    """A redis-server of our own on a fixed port, without persistence: a restart loses
    every message it held."""

    port: int
    dir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None, "redis-server is not installed"
        args = ["--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.dir)]
        self.proc = subprocess.Popen(
            [binary, *args, "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._answers, 20, "redis-server")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def queued(self, queue: str = "farm") -> int:
        return int(redis.Redis.from_url(self.url).llen(queue))

    def _answers(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=1).ping())
        except redis.RedisError:
            return False


@dataclass
class Rig:
    farm: Farm
    broker: Broker
    api: Proc

    def start_worker(self) -> Proc:
        name = f"redelivery-{self.broker.port}@test"
        worker = self.farm.start(
            "worker", "worker", "--concurrency", "2", "--name", name,
            extra_env={"FARM_WORKER_NAME": name},
        )  # fmt: skip
        wait_for(lambda: "ready" in worker.log.read_text(errors="replace"), 60, "the worker")
        return worker

    def api_log(self) -> str:
        return self.api.log.read_text(errors="replace")


@pytest.fixture
def rig(tmp_path_factory: pytest.TempPathFactory, docker_client: object) -> Iterator[Rig]:
    """Our broker, and an API using it (retrying an unreachable broker every 2 s at most)."""
    data_dir = tmp_path_factory.mktemp("redelivery")
    broker = Broker(free_port(), tmp_path_factory.mktemp("redelivery-redis"))
    broker.start()
    port = free_port()
    env = {**farm_env(data_dir, broker.url, port), "FARM_DISPATCH_RETRY_MAX": "2"}
    farm = Farm(url=f"http://127.0.0.1:{port}", env=env, data_dir=data_dir)
    try:
        api = farm.start("api", "api")
        wait_for(lambda: _healthy(farm.url) or api.popen.poll() is not None, 60, "the API")
        assert api.popen.poll() is None, api.log.read_text(errors="replace")[-4000:]
        yield Rig(farm, broker, api)
    finally:
        for proc in reversed(farm.procs):
            proc.stop()
        broker.stop()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _statuses(farm: Farm, build_id: int) -> dict[str, str]:
    return {j["name"]: j["status"] for j in farm.build(build_id)["jobs"]}


def test_jobs_that_could_not_be_queued_run_once_redis_is_back(rig: Rig, tmp_path: Path) -> None:
    worker = rig.start_worker()
    repo = make_repo(tmp_path / "repo", {".farm-ci.yml": PIPELINE})
    rig.broker.stop()
    build = rig.farm.submit(repo)  # the API still takes the build
    assert {j["status"] for j in build["jobs"]} == {"pending"}
    # (or the watchdog pass noticed first, and the submit did not even try)
    assert re.search("could not queue job|job.s. wait in the outbox", rig.api_log())
    rig.broker.start()  # a new, empty redis-server on the same port
    done = rig.farm.wait(build["id"], timeout=150)
    assert done["status"] == "success", done
    assert {(j["status"], j["attempt"]) for j in done["jobs"]} == {("success", 1)}
    assert rig.api.popen.poll() is None and worker.popen.poll() is None  # nothing restarted
    assert "outbox: sent" in rig.api_log()


def test_messages_lost_with_a_redis_restart_are_sent_again(rig: Rig, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {".farm-ci.yml": PIPELINE})
    build = rig.farm.submit(repo)  # no worker yet: the messages wait in Redis
    wait_for(lambda: rig.broker.queued() == 3, 30, "three queued messages")
    rig.broker.stop()
    rig.broker.start()  # without persistence: the three messages are gone
    # the API's next watchdog passes see Redis' new run_id and send them again, once
    wait_for(lambda: rig.broker.queued() == 3, 30, "the messages to be sent again")
    assert _statuses(rig.farm, build["id"]) == dict.fromkeys(("one", "two", "three"), "pending")
    rig.start_worker()
    done = rig.farm.wait(build["id"], timeout=150)
    assert done["status"] == "success", done
    assert {(j["status"], j["attempt"]) for j in done["jobs"]} == {("success", 1)}
    assert rig.broker.queued() == 0  # no duplicates were left behind
    assert rig.api.popen.poll() is None
