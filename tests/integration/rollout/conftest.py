"""Fixtures of the rollout drills: a farm of our own (API + one worker) for the drills
that kill the API process. Helpers: rollouttest.py; the health endpoint: tests/farmtest.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import farm_env
from tests.farmtest import Farm, free_port, wait_for
from tests.integration.rollout.rollouttest import start_api


@pytest.fixture
def private_farm(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str, docker_client: object
) -> Iterator[Farm]:
    """An API process and one worker of our own: own data dir, own port, own broker DB.

    The session redis-server is shared but on another database number, so the session
    farm's workers never see this farm's jobs. The rollout controller ticks every 0.1 s.
    Only the processes started here (``farm.procs``) are stopped, by PID.
    """
    data_dir = tmp_path_factory.mktemp("private-farm")
    port = free_port()
    broker = redis_url.rsplit("/", 1)[0] + "/7"
    env = {**farm_env(data_dir, broker, port), "FARM_ROLLOUT_TICK": "0.1"}
    farm = Farm(url=f"http://127.0.0.1:{port}", env=env, data_dir=data_dir)
    try:
        start_api(farm, "api")
        name = f"rollout-w-{port}@test"
        farm.start(
            "worker", "worker", "--concurrency", "1", "--name", name,
            extra_env={"FARM_WORKER_NAME": name},
        )  # fmt: skip
        wait_for(
            lambda: "ready" in (data_dir / "worker.log").read_text(errors="replace"),
            60,
            "the private worker",
        )
        yield farm
    finally:
        for proc in reversed(farm.procs):
            proc.stop()
