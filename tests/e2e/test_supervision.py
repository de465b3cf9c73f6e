"""`farm up` supervises its children: a SIGKILLed worker, API or Redis is restarted
while everything else keeps running; a crash loop stops the farm with one line naming
the child and its log; `farm down`, Ctrl-C and even a SIGKILLed supervisor leave no
process behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from farm.cli.supervise import ChildSpec, CrashLoop, Policy, Supervisor
from farm.errors import ConfigError
from tests.farmtest import BUSYBOX, admin_headers, farm_cli, free_port, make_repo, wait_for

_farm = farm_cli


def _env(data: Path, **extra: str) -> dict[str, str]:
    """A private farm: its own data dir, ports and Redis (which `farm up` starts)."""
    env = {
        **os.environ,
        "FARM_DATA_DIR": str(data),
        "FARM_API_PORT": str(free_port()),
        "FARM_BLOB_PORT": str(free_port()),
        "FARM_FLOWER_PORT": str(free_port()),
        "FARM_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0",
        **extra,
    }
    env.pop("FARM_API_URL", None)
    return env


def _api(env: dict[str, str]) -> str:
    return f"http://127.0.0.1:{env['FARM_API_PORT']}"


def _healthy(env: dict[str, str]) -> bool:
    try:
        return httpx.get(_api(env) + "/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _ps(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """`farm ps --json`: the supervisor's children by name."""
    run = _farm(env, "ps", "--json", timeout=60)
    assert run.returncode == 0, run.stderr
    return {c["name"]: c for c in json.loads(run.stdout)["children"]}


def _procs_of(env: dict[str, str]) -> list[int]:
    """PIDs of every live process of this farm: they carry its FARM_DATA_DIR, except
    redis-server, which rewrites its environment with its title (so: by its port)."""
    marker = f"\0FARM_DATA_DIR={env['FARM_DATA_DIR']}\0".encode()
    redis_title = f"redis-server 127.0.0.1:{urlparse(env['FARM_BROKER_URL']).port} "
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = b"\0" + (entry / "environ").read_bytes()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in environ or redis_title in cmdline:
            found.append(int(entry.name))
    return found


def _log(env: dict[str, str], name: str) -> str:
    return (Path(env["FARM_DATA_DIR"]) / "logs" / f"{name}.log").read_text(errors="replace")


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory, docker_client: object) -> Iterator[dict[str, str]]:
    data = tmp_path_factory.mktemp("supervised")
    env = _env(data)
    started = _farm(env, "up", "--detach", "--workers", "2", "--concurrency", "1")
    assert started.returncode == 0, started.stderr
    flower = f"http://127.0.0.1:{env['FARM_FLOWER_PORT']}"
    env["FLOWER_URL"] = flower
    wait_for(lambda: len(_flower_workers(flower)) == 2, 90, "Flower to see both workers")
    yield env
    down = _farm(env, "down")
    assert down.returncode == 0, down.stderr
    assert _procs_of(env) == []
    assert not (data / "farm-up.json").exists() and not (data / "farm-up.pid").exists()
    assert "stopping farm (SIGTERM)" in _log(env, "farm-up")


def _flower_workers(flower: str) -> dict[str, int | None]:
    """Worker name → pid, as Flower sees the live workers."""
    try:
        workers = httpx.get(flower + "/api/workers?refresh=1", timeout=10).json()
    except (httpx.HTTPError, ValueError):
        return {}
    return {name: (w.get("stats") or {}).get("pid") for name, w in workers.items()}


def test_ps_lists_every_child_with_pid_uptime_and_restarts(up: dict[str, str]) -> None:
    children = _ps(up)
    assert list(children) == ["redis", "api", "worker-1", "worker-2", "flower"]
    for child in children.values():
        assert child["state"] == "running" and child["pid"] and child["restarts"] == 0
    table = _farm(up, "ps")
    assert table.returncode == 0, table.stderr
    assert "RESTARTS" in table.stdout and f"{children['api']['pid']}" in table.stdout


def test_a_killed_worker_is_restarted_and_nothing_else_moves(
    up: dict[str, str], tmp_path: Path
) -> None:
    before = _ps(up)
    old = before["worker-1"]["pid"]
    os.kill(old, signal.SIGKILL)

    def restarted() -> bool:
        child = _ps(up)["worker-1"]
        return child["state"] == "running" and child["pid"] != old

    wait_for(restarted, 60, "worker-1 to be restarted")
    after = _ps(up)
    new = after["worker-1"]["pid"]
    assert after["worker-1"]["restarts"] == 1
    assert after["worker-1"]["last_exit"] == "killed by SIGKILL"
    for name in ("redis", "api", "worker-2", "flower"):
        assert after[name]["pid"] == before[name]["pid"] and after[name]["restarts"] == 0, name
    assert _healthy(up)
    w1 = f"w1@{socket.gethostname()}"
    wait_for(lambda: _flower_workers(up["FLOWER_URL"]).get(w1) == new, 90, "Flower to see new w1")
    supervisor_log = _log(up, "farm-up")
    assert f"worker-1 (pid {old}) died: killed by SIGKILL" in supervisor_log
    assert f"worker-1 restarted: pid {new} (restart 1)" in supervisor_log
    assert _log(up, "worker-1").count(" ready.") == 2

    pipeline = f"image: {BUSYBOX}\n" + "".join(
        f"j{i}:\n  script: [echo job-{i}, sleep 1]\n" for i in range(4)
    )
    repo = make_repo(tmp_path / "after-kill", {".farm-ci.yml": pipeline})
    run = _farm(up, "submit", str(repo), "--wait", "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["status"] == "success"


def test_a_killed_api_comes_back(up: dict[str, str]) -> None:
    before = _ps(up)
    old = before["api"]["pid"]
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: _ps(up)["api"]["pid"] not in (None, old), 60, "the API to be restarted")
    wait_for(lambda: _healthy(up), 60, "the restarted API to answer /healthz")
    after = _ps(up)
    assert after["api"]["restarts"] == 1 and after["api"]["last_exit"] == "killed by SIGKILL"
    for name in ("redis", "worker-1", "worker-2", "flower"):
        assert after[name]["pid"] == before[name]["pid"], name
    headers = admin_headers(up["FARM_DATA_DIR"])
    assert httpx.get(_api(up) + "/api/v1/builds", timeout=10, headers=headers).status_code == 200


def test_a_crash_loop_stops_everything_and_names_the_child(tmp_path: Path) -> None:
    # Flower on a port that is taken dies at every start: a real crash loop.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = _env(
            tmp_path,
            FARM_FLOWER_PORT=str(taken.getsockname()[1]),
            FARM_SUPERVISE_BACKOFF_INITIAL="0.2",
            FARM_SUPERVISE_CRASH_DEATHS="3",
            FARM_SUPERVISE_CRASH_WINDOW="60",
        )
        run = _farm(env, "up", "--workers", "0", timeout=180)
    assert run.returncode == 2, run.stderr
    last = run.stderr.strip().splitlines()[-1]
    flower_log = tmp_path / "logs" / "flower.log"
    assert last == (
        "error: flower is crash-looping (3 deaths within 60 s, last: exit 1): "
        f"farm up stops the whole farm; see {flower_log}"
    )
    assert "Address already in use" in flower_log.read_text()
    supervisor_log = _log(env, "farm-up")
    assert supervisor_log.count("flower (pid ") == 2  # died twice and was restarted twice
    assert "restart 2 in 0.4 s" in supervisor_log and last in supervisor_log
    assert _procs_of(env) == []
    assert not (tmp_path / "farm-up.json").exists() and not (tmp_path / "farm-up.pid").exists()


@contextlib.contextmanager
def _foreground(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`farm up` in the foreground with one worker; SIGTERMed at the end if still running."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "farm.cli.main", "up", "--workers", "1", "--no-flower"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: _healthy(env) or proc.poll() is not None, 90, "the farm to answer")
        assert proc.poll() is None, log.read_text()
        assert len(_ps(env)) == 3
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(90)


def test_ctrl_c_stops_a_foreground_farm(tmp_path: Path) -> None:
    env = _env(tmp_path / "data")
    with _foreground(env, tmp_path / "console.log") as proc:
        assert len(_procs_of(env)) == 4  # supervisor, redis, API, one worker
        proc.send_signal(signal.SIGINT)
        assert proc.wait(90) == 0
    console = (tmp_path / "console.log").read_text()
    assert "stopping farm (SIGINT)" in console and "stopped: every child has exited" in console
    assert _procs_of(env) == []


def test_children_stop_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    env = _env(tmp_path / "data")
    with _foreground(env, tmp_path / "console.log") as proc:
        proc.kill()
        proc.wait(10)
    # Each child asked the kernel for SIGTERM when its parent dies (PR_SET_PDEATHSIG).
    wait_for(lambda: _procs_of(env) == [], 60, "the orphaned children to exit")
    assert _farm(env, "ps").returncode == 1
    down = _farm(env, "down")
    assert down.returncode == 0 and "not running" in down.stderr
    assert not (tmp_path / "data" / "farm-up.json").exists()


# --- the supervisor alone, with children that die at once ---------------------------


def _exits(code: int, after: float = 0.0) -> ChildSpec:
    script = f"import sys, time; time.sleep({after}); sys.exit({code})"
    return ChildSpec("dies", [sys.executable, "-c", script])


def _supervise_until_crash_loop(sup: Supervisor, seconds: float = 60) -> CrashLoop:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            sup.tick()
        except CrashLoop as exc:
            sup.stop()
            return exc
        time.sleep(0.05)
    raise AssertionError("no crash loop")


def test_backoff_doubles_up_to_its_cap_then_the_crash_loop_stops_it(tmp_path: Path) -> None:
    lines: list[str] = []
    policy = Policy(backoff_initial=0.1, backoff_max=0.3, crash_deaths=5, crash_window=60)
    sup = Supervisor(tmp_path, policy, echo=lines.append)
    sup.start(_exits(3))
    exc = _supervise_until_crash_loop(sup)
    delays = [ln.split(" in ")[1].split(" s;")[0] for ln in lines if " died: " in ln]
    assert delays == ["0.1", "0.2", "0.3", "0.3"]
    assert all("died: exit 3" in ln for ln in lines if " died: " in ln)
    assert str(exc).startswith("dies is crash-looping (5 deaths within 60 s, last: exit 3)")
    assert str(exc).endswith(f"see {tmp_path / 'logs' / 'dies.log'}")
    assert sup.children[0].restarts == 4
    assert json.loads((tmp_path / "farm-up.json").read_text())["children"][0]["restarts"] == 4


def test_a_child_that_stayed_up_starts_again_from_the_first_delay(tmp_path: Path) -> None:
    lines: list[str] = []
    policy = Policy(backoff_initial=0.1, stable_after=0.3, crash_deaths=3, crash_window=60)
    sup = Supervisor(tmp_path, policy, echo=lines.append)
    sup.start(_exits(0, after=0.5))
    _supervise_until_crash_loop(sup)
    assert [ln.split(" in ")[1].split(" s;")[0] for ln in lines if " died: " in ln] == [
        "0.1",
        "0.1",
    ]


def test_policy_comes_from_the_environment_and_rejects_nonsense() -> None:
    policy = Policy.from_env(
        {"FARM_SUPERVISE_CRASH_DEATHS": "2", "FARM_SUPERVISE_BACKOFF_MAX": "5"}
    )
    assert (policy.crash_deaths, policy.backoff_max, policy.backoff_initial) == (2, 5.0, 1.0)
    with pytest.raises(ConfigError, match="FARM_SUPERVISE_CRASH_WINDOW"):
        Policy.from_env({"FARM_SUPERVISE_CRASH_WINDOW": "soon"})
    with pytest.raises(ConfigError, match="greater than 0"):
        Policy.from_env({"FARM_SUPERVISE_BACKOFF_INITIAL": "0"})
    with pytest.raises(ConfigError, match="BACKOFF_MAX"):
        Policy.from_env({"FARM_SUPERVISE_BACKOFF_INITIAL": "10", "FARM_SUPERVISE_BACKOFF_MAX": "2"})


def test_a_child_that_cannot_be_started_again_counts_as_a_death(tmp_path: Path) -> None:
    script = tmp_path / "once.sh"
    script.write_text("#!/bin/sh\nexit 3\n")
    script.chmod(0o755)
    lines: list[str] = []
    policy = Policy(backoff_initial=0.1, crash_deaths=3, crash_window=60)
    sup = Supervisor(tmp_path, policy, echo=lines.append)
    sup.start(ChildSpec("once", [str(script)]))
    script.unlink()  # its binary is gone: every restart fails to exec
    exc = _supervise_until_crash_loop(sup)
    assert "once (pid -) died: could not start ([Errno 2]" in "\n".join(lines)
    assert "last: could not start" in str(exc)
