"""Worker drills through real processes (issue 16, items 4, 5 and 7).

Each drill runs a farm of its own — an API process and the worker processes the test
starts, on a free port, a data dir of its own and a broker database of its own — so it
can SIGKILL them. Only processes started here are stopped, by PID; only containers
labelled with this farm's API URL are touched.

4. A SIGKILLed worker's job container stops itself within the container lease, with no
   worker left to stop it, and Docker's own event record shows attempt 1's container
   dead before attempt 2's started.
5. The API is SIGKILLed while a job prints lines and started again 20 s later: the job
   ends ``success`` as attempt 1 and its log holds every line, in order.
7. A job plants a set-uid-root shell in its workspace: a real
   unprivileged host user (uid 65534, no capabilities) cannot reach it. The dead
   worker's job dir is removed when a worker starts again.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from tests.conftest import farm_env
from tests.farmtest import BUSYBOX, DEBIAN, Farm, Proc, free_port, job_named, make_repo, wait_for

pytestmark = pytest.mark.integration

BROKER_DB = 8  # the session redis-server, a database no other farm of the session uses
JOB_LEASE = 12  # FARM_JOB_LEASE_SECONDS of the drills (item 5's is longer than its outage)
CONTAINER_LEASE = 6  # what the workers derive from it: min(10, JOB_LEASE / 2)

MakeFarm = Callable[..., Farm]


# --- a farm of our own ----------------------------------------------------------------


def healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def start_api(farm: Farm, name: str) -> Proc:
    proc = farm.start(name, "api")
    wait_for(lambda: healthy(farm.url) or proc.popen.poll() is not None, 60, f"the API ({name})")
    assert proc.popen.poll() is None, proc.log.read_text(errors="replace")[-4000:]
    return proc


def start_worker(farm: Farm, name: str) -> tuple[Proc, str]:
    """A worker process of this farm (one job slot); returns it and its worker name."""
    full = f"{name}-{farm.url.rsplit(':', 1)[1]}@drill"
    proc = farm.start(
        name, "worker", "--concurrency", "1", "--name", full,
        extra_env={"FARM_WORKER_NAME": full},
    )  # fmt: skip
    wait_for(
        lambda: "ready" in proc.log.read_text(errors="replace") or proc.popen.poll() is not None,
        60,
        f"worker {name}",
    )
    assert proc.popen.poll() is None, proc.log.read_text(errors="replace")[-4000:]
    return proc, full


def sigkill(proc: Proc) -> float:
    """SIGKILL one process this test started; the time it was dead."""
    proc.popen.send_signal(signal.SIGKILL)
    proc.popen.wait(10)
    return time.time()


@pytest.fixture
def make_farm(redis_url: str, docker_client: docker.DockerClient) -> Iterator[MakeFarm]:
    """Make a farm (API only; tests start workers) with extra ``FARM_*`` settings.

    Its data dir is world-traversable (0755), as ``/var/lib/farm`` is: what keeps other
    users out of job workspaces must be the farm's own doing.
    """
    import redis

    made: list[Farm] = []

    def make(**settings: str) -> Farm:
        data_dir = Path(tempfile.mkdtemp(prefix="farm-drill-", dir="/tmp"))
        os.chmod(data_dir, 0o755)
        port = free_port()
        broker = f"{redis_url.rsplit('/', 1)[0]}/{BROKER_DB}"
        redis.Redis.from_url(broker).flushdb()  # no message of an earlier drill
        env = {
            **farm_env(data_dir, broker, port),
            "FARM_JOB_LEASE_SECONDS": str(JOB_LEASE),
            "FARM_REAP_INTERVAL": "30",  # the default: no drill may lean on the reaper
            **settings,
        }
        farm = Farm(url=f"http://127.0.0.1:{port}", env=env, data_dir=data_dir)
        made.append(farm)
        start_api(farm, "api")
        return farm

    try:
        yield make
    finally:
        for farm in made:
            for proc in reversed(farm.procs):
                proc.stop()
            for c in docker_client.containers.list(
                all=True, filters={"label": f"farm.api={farm.url}"}
            ):
                c.remove(force=True)
            shutil.rmtree(farm.data_dir, ignore_errors=True)


class ContainerEvents:
    """Docker's own record of a farm's containers: (action, attempt, role, unix time)."""

    def __init__(self, client: docker.DockerClient, api_url: str) -> None:
        self.seen: list[tuple[str, str, str, float]] = []
        self._stream: Any = client.events(
            decode=True, filters={"type": "container", "label": [f"farm.api={api_url}"]}
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for event in self._stream:
                attrs = event.get("Actor", {}).get("Attributes", {})
                self.seen.append(
                    (
                        str(event.get("Action") or event.get("status")),
                        str(attrs.get("farm.attempt")),
                        str(attrs.get("farm.role")),
                        int(event["timeNano"]) / 1e9,
                    )
                )
        except Exception:  # the stream was closed under us
            return

    def times(self, action: str, attempt: int) -> list[float]:
        return [t for a, n, role, t in self.seen if (a, n, role) == (action, str(attempt), "job")]

    def close(self) -> None:
        self._stream.close()
        self._thread.join(5)


def job_containers(client: docker.DockerClient, farm: Farm, job_id: int) -> list[Any]:
    filters = {"label": [f"farm.api={farm.url}", f"farm.job={job_id}"]}
    return list(client.containers.list(all=True, filters=filters))


# --- item 4: a job never runs twice at once -------------------------------------------

SLEEPER = f"""
image: {BUSYBOX}
sleeper:
  script:
    - echo "attempt $CI_JOB_ATTEMPT"
    - if [ "$CI_JOB_ATTEMPT" = 1 ]; then sleep 300; fi
    - echo finished
"""


def test_a_killed_workers_job_stops_itself_and_attempts_never_overlap(
    make_farm: MakeFarm, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    farm = make_farm()
    events = ContainerEvents(docker_client, farm.url)
    try:
        victim, _ = start_worker(farm, "victim")
        build = farm.submit(make_repo(tmp_path / "sleeper", {".farm-ci.yml": SLEEPER}))
        job = farm.wait_job(build["id"], "sleeper", {"running"}, timeout=60)
        wait_for(lambda: "attempt 1" in farm.log(job["id"]), 60, "attempt 1 to run its script")
        (container,) = job_containers(docker_client, farm, job["id"])
        killed = sigkill(victim)

        # No worker is left anywhere: the container must stop by itself, within its lease.
        def stopped() -> bool:
            container.reload()
            return not container.attrs["State"]["Running"]

        wait_for(stopped, CONTAINER_LEASE + 15, "the orphaned job container to stop itself")
        wait_for(lambda: bool(events.times("die", 1)), 10, "docker's die event")
        (died,) = events.times("die", 1)
        assert died - killed < CONTAINER_LEASE + 4, f"stopped {died - killed:.1f} s after the kill"

        _, rescuer = start_worker(farm, "rescuer")
        done = farm.wait(build["id"], timeout=120)
        final = job_named(done, "sleeper")
        assert done["status"] == "success", done
        assert (final["attempt"], final["worker"]) == (2, rescuer)
        assert "finished" in farm.log(final["id"])
        # Docker's record: attempt 1's container was dead before attempt 2's started.
        wait_for(lambda: bool(events.times("start", 2)), 10, "docker's start event")
        (started,) = events.times("start", 2)
        assert died < started, f"attempt 2 started {died - started:.1f} s before attempt 1 died"
        # ...and every container of the job is gone (the fence removed attempt 1's).
        wait_for(lambda: not job_containers(docker_client, farm, job["id"]), 30, "no containers")
    finally:
        events.close()


# --- item 5: an API outage loses no result and no log line -----------------------------

LINES = 20
TALKER = f"""
image: {BUSYBOX}
talker:
  script:
    - i=0; while [ $i -lt {LINES} ]; do echo "line $i of {LINES}"; i=$((i+1)); sleep 0.2; done
    - echo "all lines written"
"""
OUTAGE = 20  # seconds; the job ends ~4 s into it


def test_an_api_outage_while_a_job_runs_loses_neither_its_result_nor_a_line(
    make_farm: MakeFarm, tmp_path: Path
) -> None:
    # A lease longer than the outage, so the drill tests the worker alone: the coordinator
    # counts leases from its own start after a restart (its side of the same issue).
    farm = make_farm(FARM_JOB_LEASE_SECONDS="45")
    worker, name = start_worker(farm, "steady")
    build = farm.submit(make_repo(tmp_path / "talker", {".farm-ci.yml": TALKER}))
    job = farm.wait_job(build["id"], "talker", {"running"}, timeout=60)
    wait_for(lambda: f"line 2 of {LINES}" in farm.log(job["id"]), 60, "the job to talk")
    (api,) = [p for p in farm.procs if p.name == "api"]
    sigkill(api)
    time.sleep(OUTAGE)  # the job ends while the API is down
    start_api(farm, "api-again")
    done = farm.wait(build["id"], timeout=120)
    final = job_named(done, "talker")
    assert done["status"] == "success", done
    assert (final["attempt"], final["worker"]) == (1, name)  # no attempt 2, ever
    log = farm.log(final["id"])
    positions = [log.find(f"line {i} of {LINES}\n") for i in range(LINES)]
    assert -1 not in positions, log
    assert positions == sorted(positions), log
    assert log.find("all lines written") > positions[-1]
    assert "Job succeeded" in log
    # the worker did hit the outage, spooled, and its spool is empty again
    assert "output is spooled" in worker.log.read_text(errors="replace")
    assert worker.popen.poll() is None
    assert not list((farm.data_dir / "work" / "spool").glob("*.jsonl"))


# --- item 7: a job's workspace gives no host user root; dead job dirs are swept -------

PLANTER = f"""
image: {DEBIAN}
planter:
  script:
    - cp /bin/bash rootsh && chmod 4755 rootsh && ls -l rootsh
    - if [ "$CI_JOB_ATTEMPT" = 1 ]; then echo planted; sleep 300; fi
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the job's files are root's")
def test_a_set_uid_shell_planted_by_a_job_gives_no_host_user_root(
    make_farm: MakeFarm, tmp_path: Path
) -> None:
    farm = make_farm()
    planter, _ = start_worker(farm, "planter")
    build = farm.submit(make_repo(tmp_path / "planter", {".farm-ci.yml": PLANTER}))
    job = farm.wait_job(build["id"], "planter", {"running"}, timeout=60)
    wait_for(lambda: "planted" in farm.log(job["id"]), 90, "the job to plant its shell")
    work = farm.data_dir / "work"
    (planted,) = work.glob(f"job-{job['id']}-1-*/workspace/rootsh")
    st = planted.stat()
    assert st.st_uid == 0 and st.st_mode & stat.S_ISUID, "the job did plant a set-uid-root shell"

    # A real unprivileged user: uid/gid 65534, no groups, no capabilities (setpriv alone
    # would keep root's capabilities up to its own execve, so it runs a shell first).
    attempts = [
        ["runuser", "-u", "nobody", "--", str(planted), "-p", "-c", "id -u"],
        [
            "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
            "/bin/sh", "-c", f"exec '{planted}' -p -c 'id -u'",
        ],
    ]  # fmt: skip
    for argv in attempts:
        ran = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        assert ran.stdout.strip() != "0", f"{argv} got euid 0: {ran}"
        assert ran.returncode != 0 and "Permission denied" in ran.stderr, ran
    # what stops them: every job dir is under the worker's private work dir
    assert stat.S_IMODE(work.stat().st_mode) == 0o700 and work.stat().st_uid == os.geteuid()

    # The worker dies mid-job: its job dir outlives it, until a worker starts again.
    jobdir = planted.parents[1]
    sigkill(planter)
    assert jobdir.is_dir()
    start_worker(farm, "sweeper")
    wait_for(lambda: not jobdir.exists(), 30, "the dead attempt's job dir to be swept")
    with farm.http as h:
        assert h.post(f"/api/v1/builds/{build['id']}/cancel").status_code == 200
