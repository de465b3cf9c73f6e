"""Issue 16, item 1, through the session's real API process: pipeline bombs are refused.

A ~400-byte file of eight levels of YAML anchors (``script: *h``) used to expand to 43
million script lines, take the API to 19 GB and write a 1 GB database that came back on
every restart. Now the API answers 422 naming the limit and its setting, its memory does
not move, nothing is stored, and it keeps answering.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.farmtest import Farm, make_repo


def anchor_bomb(levels: int = 8, width: int = 9) -> str:
    lines = [".bomb:", f"  l0: &L0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels):
        lines.append(f"  l{i}: &L{i} [{', '.join([f'*L{i - 1}'] * width)}]")
    return "\n".join(lines) + f"\njob:\n  script: *L{levels - 1}\n"


BOMBS = {
    # the file
    "anchors": (anchor_bomb(), "FARM_PIPELINE_MAX_ALIASES"),
    # each variable repeats the previous one ten times: 10**9 characters
    "variables": (
        "variables:\n  A0: xxxxxxxxxx\n"
        + "".join(f"  A{i}: {f'$A{i - 1}' * 10}\n" for i in range(1, 9))
        + "job:\n  script: [echo $A8]\n",
        "FARM_PIPELINE_MAX_JOB_BYTES",
    ),
    # 2,200 jobs from 11 lines of parallel
    "jobs": (
        "".join(f"j{n}:\n  script: x\n  parallel: 200\n" for n in range(11)),
        "FARM_PIPELINE_MAX_JOBS",
    ),
}
RSS_GROWTH = 64 * 2**20  # the API's peak RSS may grow by this much while refusing a bomb
RSS_MAX = 1024 * 2**20  # and stays under this, whatever ran before in the session


def _status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of ``pid``, in bytes."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) * 1024
    return found


def _reset_peak(pid: int) -> bool:
    """Reset the peak RSS of ``pid`` (``5`` to ``clear_refs``); False where not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@pytest.mark.parametrize("kind", list(BOMBS))
def test_pipeline_bomb_is_refused_by_the_real_api(farm: Farm, tmp_path: Path, kind: str) -> None:
    text, setting = BOMBS[kind]
    assert len(text) < 1000
    project = f"bomb-{kind}-{tmp_path.name}"
    repo = make_repo(tmp_path / project, {".gitlab-ci.yml": text})
    (api,) = [p for p in farm.procs if p.name == "api"]
    pid = api.popen.pid
    before = _status(pid)
    reset = _reset_peak(pid)
    baseline = _status(pid)["VmHWM"] if reset else before["VmHWM"]

    started = time.perf_counter()
    with farm.http as h:
        resp = h.post("/api/v1/builds", json={"repo": str(repo), "ref": "main"})
        seconds = time.perf_counter() - started
        after = _status(pid)
        listed = h.get("/api/v1/builds", params={"project": project})
        health = h.get("/healthz")

    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["error"] == "PipelineError"
    assert isinstance(body["detail"], str)
    assert body["detail"].startswith(".gitlab-ci.yml:")  # file:line:col
    assert f"({setting})" in body["detail"], body["detail"]
    assert body["problems"] == [body["detail"]]
    growth = after["VmHWM"] - baseline
    assert growth < RSS_GROWTH, f"API peak RSS grew by {growth / 2**20:.0f} MiB"
    assert after["VmHWM"] < RSS_MAX, f"API peak RSS {after['VmHWM'] / 2**20:.0f} MiB"
    # nothing stored: no build (so nothing for recovery to reload), and the API answers
    assert listed.status_code == 200 and listed.json() == []
    assert health.status_code == 200
    assert api.popen.poll() is None
    print(
        f"\n{kind}: 422 in {seconds * 1000:.0f} ms; API RSS {before['VmRSS'] / 2**20:.0f} -> "
        f"{after['VmRSS'] / 2**20:.0f} MiB, peak during the request "
        f"{after['VmHWM'] / 2**20:.0f} MiB (+{growth / 2**20:.1f}); {body['detail']}"
    )
