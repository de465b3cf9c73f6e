"""Flower sees a failed job as a FAILURE task under the stable name farm.run_job (so its
/metrics series stay few); a canceled build's messages leave the queue."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import httpx
import redis

from farm.worker.app import _job_of
from tests.farmtest import BUSYBOX, Farm, free_port, job_named, make_repo, wait_for

TWO = f"""
image: {BUSYBOX}
good:
  script: [echo fine]
bad:
  script: [exit 3]
"""


def _get(url: str) -> Any:
    try:
        resp = httpx.get(url, timeout=3)
    except httpx.HTTPError:
        return None
    return resp.json() if resp.status_code == 200 else None


def test_flower_shows_a_failed_job_as_failure_under_the_stable_task_name(
    farm: Farm, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    flower = farm.start(
        "flower", "flower", "--port", str(port), extra_env={"FLOWER_UNAUTHENTICATED_API": "true"}
    )
    try:
        wait_for(lambda: bool(_get(url + "/api/workers?refresh=1")), 90, "Flower to see workers")
        repo = make_repo(tmp_path / "two", {".farm-ci.yml": TWO})
        done = farm.wait(farm.submit(repo)["id"])
        assert done["status"] == "failed", done
        build_id, bad = done["id"], job_named(done, "bad")
        assert bad["attempt"] == 1

        def ours() -> dict[str, dict[str, Any]]:
            tasks = _get(url + "/api/tasks") or {}
            return {
                t["args"]: t
                for t in tasks.values()
                if f"build {build_id} · " in str(t.get("args"))
                and t.get("state") in ("SUCCESS", "FAILURE")
            }

        wait_for(lambda: len(ours()) == 2, 60, "both tasks finished in Flower")
        tasks = ours()
        states = {args.split(" · ")[1].split(" #")[0]: t["state"] for args, t in tasks.items()}
        assert states == {"good": "SUCCESS", "bad": "FAILURE"}
        assert {t["name"] for t in tasks.values()} == {"farm.run_job"}
        metrics = httpx.get(url + "/metrics", timeout=5).text
        assert 'task="farm.run_job"' in metrics
        assert f"build {build_id}" not in metrics
        # Acked, not redelivered: nothing of it waits in the broker, no second attempt.
        broker = redis.Redis.from_url(farm.env["FARM_BROKER_URL"])
        time.sleep(2)
        assert broker.hlen("unacked") == 0
        assert job_named(farm.build(build_id), "bad")["attempt"] == 1
    finally:
        flower.stop()


NOBODY = f"""
image: {BUSYBOX}
stranded:
  tags: [nobody-serves-this]
  script: [echo never]
"""


def test_cancel_removes_the_queued_messages_of_jobs_no_worker_serves(
    farm: Farm, tmp_path: Path
) -> None:
    broker = redis.Redis.from_url(farm.env["FARM_BROKER_URL"])
    queue = "farm.tags.nobody-serves-this"
    repo = make_repo(tmp_path / "nobody", {".farm-ci.yml": NOBODY})
    build = farm.submit(repo)
    wait_for(lambda: broker.llen(queue) == 1, 30, "the job's message in its queue")
    canceled = farm.cli("cancel", str(build["id"]))
    assert canceled.returncode == 0, canceled.stderr
    assert farm.wait(build["id"])["status"] == "canceled"
    assert broker.llen(queue) == 0


def test_a_cancel_takes_only_its_own_messages_out_of_a_shared_queue(
    farm: Farm, tmp_path: Path
) -> None:
    """Withdrawing is one atomic pass over the queue (a script, not one LREM per message):
    the other builds' messages stay, in their order."""
    broker = redis.Redis.from_url(farm.env["FARM_BROKER_URL"])
    queue = "farm.tags.nobody-serves-this"
    wide = NOBODY + "".join(
        f"stranded-{i}:\n  tags: [nobody-serves-this]\n  script: [echo never]\n" for i in range(30)
    )
    builds = []
    for name in ("first", "middle", "last"):
        builds.append(farm.submit(make_repo(tmp_path / name, {".farm-ci.yml": wide})))
        wait_for(lambda n=len(builds): broker.llen(queue) == 31 * n, 30, "the messages")
    before = [_job_of(raw) for raw in broker.lrange(queue, 0, -1)]
    middle = {j["id"] for j in builds[1]["jobs"]}
    assert farm.cli("cancel", str(builds[1]["id"])).returncode == 0
    after = [_job_of(raw) for raw in broker.lrange(queue, 0, -1)]
    assert after == [j for j in before if j not in middle] and len(after) == 62
    for build in (builds[0], builds[2]):
        assert farm.cli("cancel", str(build["id"])).returncode == 0
    assert broker.llen(queue) == 0


MANY = f"image: {BUSYBOX}\n" + "".join(
    f"quick-{i}:\n  needs: []\n  script: [echo {i}]\n" for i in range(12)
)


def _seen_all(events: list[dict[str, Any]], jobs: set[int]) -> bool:
    """Whether every job's task has its received, started and succeeded events."""
    seen: dict[str, set[str]] = {}
    for event in events:
        seen.setdefault(str(event.get("uuid")), set()).add(str(event.get("type")))
    args = {str(e.get("uuid")): str(e.get("args", "")) for e in events if e.get("args")}
    done = [
        uuid
        for uuid, types in seen.items()
        if {"task-received", "task-started", "task-succeeded"} <= types
    ]
    covered = {
        int(args[u].rsplit("(job ", 1)[1].rstrip(")")) for u in done if "(job " in args.get(u, "")
    }
    return jobs <= covered


def test_the_workers_task_events_go_out_in_batches(farm: Farm, tmp_path: Path) -> None:
    """Every task's events reach the broker (Flower's source), a batch per message
    (farm/worker/consumer.py, farm/worker/sent_events.py): not a publish per event."""
    broker = redis.Redis.from_url(farm.env["FARM_BROKER_URL"])
    listener = broker.pubsub()
    listener.psubscribe("*celeryev*task*")
    try:
        assert listener.get_message(timeout=5)["type"] == "psubscribe"  # type: ignore[index]
        build = farm.wait(farm.submit(make_repo(tmp_path / "many", {".farm-ci.yml": MANY}))["id"])
        assert build["status"] == "success"
        ours = {j["id"] for j in build["jobs"]}
        messages, events, sent_messages = 0, [], 0
        sent: list[dict[str, Any]] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            message = listener.get_message(timeout=1)
            if message is None:
                if _seen_all(events, ours):
                    break
                continue
            if message["type"] != "pmessage":
                continue
            envelope = json.loads(message["data"])
            body = json.loads(base64.b64decode(envelope["body"]))
            batch = body if isinstance(body, list) else [body]
            worker = [e for e in batch if e.get("type") != "task-sent"]
            messages += bool(worker)
            events += worker
            sent += [e for e in batch if e.get("type") == "task-sent"]  # the API's
            sent_messages += len(batch) > len(worker)
        assert _seen_all(events, ours), "a task event of the build never reached the broker"
        # 12 tasks x (received, started, succeeded) = 36 events, in far fewer messages.
        assert messages <= 18, f"{len(events)} task events in {messages} messages"
        # The API's task-sent events too (farm/worker/sent_events.py).
        assert {e["uuid"] for e in sent} >= {e["uuid"] for e in events}
        assert sent_messages <= 6, f"{len(sent)} task-sent events in {sent_messages} messages"
    finally:
        listener.close()
