"""Commit statuses back to the git host: real API, real Celery worker, real Redis, real
containers, and a fake GitHub/GitLab on 127.0.0.1 that records what it is sent.

A webhook makes a build; the build's transitions reach the fake host as commit statuses
(pending, running, then the result) with the build's link, the context, the commit and
the worker's token; a host answering 500 gets the status again (Celery retries).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from farm.githost.status import CommitStatus
from farm.settings import Settings
from farm.worker.commit_status import Deliverer
from tests.farmtest import BUSYBOX, Farm, commit_files, free_port, git, make_repo, wait_for

pytestmark = pytest.mark.integration

GH_SECRET = "gh-hook-secret"
GL_TOKEN = "gl-hook-token"
GH_STATUS_TOKEN = "gh-status-token-for-tests"
GL_STATUS_TOKEN = "gl-status-token-for-tests"
CONTEXT = "farm/ci"

PIPELINE = f"""\
image: {BUSYBOX}
check:
  script:
    - sleep 2
    - test "$CI_PIPELINE_SOURCE" = push
    - test ! -e broken
"""


class FakeHost:
    """GitHub's and GitLab's status endpoints on 127.0.0.1: records every POST, answers
    201 (or 500 to the next ``fail_next`` requests)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail_next = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with outer._lock:
                    failing = outer.fail_next > 0
                    outer.fail_next -= int(failing)
                    code = 500 if failing else 201
                    outer.requests.append(
                        {
                            "path": self.path,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "body": body,
                            "code": code,
                            "at": time.monotonic(),
                        }
                    )
                data = b"{}"
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of(self, target_url: str) -> list[dict[str, Any]]:
        """Requests about one build (its link), in arrival order."""
        with self._lock:
            return [r for r in self.requests if r["body"].get("target_url") == target_url]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def host() -> Iterator[FakeHost]:
    fake = FakeHost()
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def status_farm(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str, docker_client: object, host: FakeHost
) -> Iterator[Farm]:
    """An API and one worker (2 slots) on their own Redis database, reporting to ``host``."""
    data_dir = tmp_path_factory.mktemp("status-farm")
    port = free_port()
    broker = redis_url.rsplit("/", 1)[0] + "/5"  # not the session farm's queues
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FARM_")},
        "FARM_DATA_DIR": str(data_dir),
        "FARM_BROKER_URL": broker,
        "FARM_API_HOST": "127.0.0.1",
        "FARM_API_PORT": str(port),
        "FARM_API_URL": f"http://127.0.0.1:{port}",
        "FARM_BLOB_PORT": "0",
        "FARM_WATCHDOG_INTERVAL": "1",
        "FARM_GITHUB_WEBHOOK_SECRET": GH_SECRET,
        "FARM_GITLAB_WEBHOOK_TOKEN": GL_TOKEN,
        "FARM_HOOK_ALLOWED_URL_SCHEMES": '["https", "file"]',
        "FARM_GITHUB_API_URL": host.url,
        "FARM_GITHUB_STATUS_TOKEN": GH_STATUS_TOKEN,
        "FARM_GITLAB_STATUS_TOKEN": GL_STATUS_TOKEN,
        "FARM_STATUS_CONTEXT": CONTEXT,
    }
    f = Farm(url=f"http://127.0.0.1:{port}", env=env, data_dir=data_dir)
    api = f.start("api", "api")
    wait_for(lambda: _healthy(f.url) or api.popen.poll() is not None, 60, "the API")
    assert api.popen.poll() is None, api.log.read_text()
    name = f"status-{port}@test"
    worker = f.start(
        "worker",
        "worker",
        "--concurrency",
        "2",
        "--name",
        name,
        extra_env={"FARM_WORKER_NAME": name},
    )
    wait_for(lambda: "ready" in worker.log.read_text(errors="replace"), 60, "the worker")
    yield f
    for proc in reversed(f.procs):
        proc.stop()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A repository with a green commit and, after it, a red one: (repo, green, red)."""
    repo = make_repo(tmp_path_factory.mktemp("hooked") / "shop", {".farm-ci.yml": PIPELINE})
    green = git(repo, "rev-parse", "HEAD")
    red = commit_files(repo, {"broken": "yes\n"}, "break it")
    return repo, green, red


def github_push(farm: Farm, repo: Path, sha: str, delivery: str) -> dict[str, Any]:
    payload = {
        "ref": "refs/heads/main",
        "after": sha,
        "repository": {"clone_url": f"file://{repo}", "full_name": "octo/shop"},
    }
    body = json.dumps(payload).encode()
    digest = hmac.new(GH_SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": f"sha256={digest}",
        "Content-Type": "application/json",
    }
    resp = httpx.post(f"{farm.url}/api/v1/hooks/github", content=body, headers=headers)
    assert resp.status_code == 201, resp.text
    build: dict[str, Any] = resp.json()["build"]
    return build


def settled(host: FakeHost, link: str, final: str) -> list[dict[str, Any]]:
    """Wait until ``final`` was delivered (201) for the build, and nothing came after."""
    wait_for(
        lambda: any(r["body"]["state"] == final and r["code"] == 201 for r in host.of(link)),
        60,
        f"the {final} status at the fake host",
    )
    time.sleep(2)  # anything late (a stale "running") would arrive now
    return host.of(link)


def delivered(requests: list[dict[str, Any]]) -> list[str]:
    """(state, description) of each delivered status, in order."""
    return [
        f"{r['body']['state']}: {r['body']['description']}" for r in requests if r["code"] == 201
    ]


def test_github_push_build_reports_pending_running_then_success(
    status_farm: Farm, host: FakeHost, shop: tuple[Path, str, str]
) -> None:
    repo, green, _ = shop
    build = github_push(status_farm, repo, green, "gh-green")
    assert build["source"] == "push"
    link = f"{status_farm.url}/builds/{build['id']}"
    assert status_farm.wait(build["id"])["status"] == "success"  # CI_PIPELINE_SOURCE=push
    requests = settled(host, link, "success")
    n = build["id"]
    assert delivered(requests) == [
        f"pending: farm build #{n} is pending",
        f"pending: farm build #{n} is running",
        f"success: farm build #{n} passed",
    ]
    for r in requests:
        assert r["path"] == f"/repos/octo/shop/statuses/{green}"
        assert r["headers"]["authorization"] == f"Bearer {GH_STATUS_TOKEN}"
        assert r["headers"]["accept"] == "application/vnd.github+json"
        assert r["body"]["context"] == CONTEXT
        assert r["body"]["target_url"] == link


def test_a_failing_build_reports_failure(
    status_farm: Farm, host: FakeHost, shop: tuple[Path, str, str]
) -> None:
    repo, _, red = shop
    build = github_push(status_farm, repo, red, "gh-red")
    link = f"{status_farm.url}/builds/{build['id']}"
    assert status_farm.wait(build["id"])["status"] == "failed"
    requests = settled(host, link, "failure")
    assert delivered(requests)[0].startswith("pending: ")
    assert delivered(requests)[-1] == f"failure: farm build #{build['id']} failed"
    assert {r["path"] for r in requests} == {f"/repos/octo/shop/statuses/{red}"}


def test_a_host_answering_500_gets_the_status_again(
    status_farm: Farm, host: FakeHost, shop: tuple[Path, str, str]
) -> None:
    repo, green, _ = shop
    with host._lock:
        host.fail_next = 2
    build = github_push(status_farm, repo, green, "gh-green-again")
    link = f"{status_farm.url}/builds/{build['id']}"
    assert status_farm.wait(build["id"])["status"] == "success"
    requests = settled(host, link, "success")
    failed = [r for r in requests if r["code"] == 500]
    assert len(failed) == 2
    # The statuses that met a 500 were delivered by a retry, in order, success last.
    retried = {r["body"]["description"] for r in failed}
    assert retried <= {r["body"]["description"] for r in requests if r["code"] == 201}
    assert delivered(requests)[-1].startswith("success: ")
    assert delivered(requests)[0] == f"pending: farm build #{build['id']} is pending"


def test_gitlab_push_build_reports_to_the_project_on_its_gitlab(
    status_farm: Farm, host: FakeHost, shop: tuple[Path, str, str]
) -> None:
    repo, _, _ = shop
    # A commit of its own: the GitHub test's green commit would be answered from the
    # result cache (no "running" status then).
    git(repo, "rm", "-q", "broken")  # on top of the red commit: green again
    green = commit_files(repo, {"gitlab.txt": "pushed to the GitLab mirror\n"})
    payload = {
        "object_kind": "push",
        "ref": "refs/heads/main",
        "after": green,
        "checkout_sha": green,
        "project": {
            "id": 42,
            "path_with_namespace": "group/shop",
            "web_url": f"{host.url}/group/shop",  # the GitLab's base URL comes from here
            "git_http_url": f"file://{repo}",
        },
    }
    headers = {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": GL_TOKEN}
    headers["X-Gitlab-Event-UUID"] = "gl-green"
    resp = httpx.post(f"{status_farm.url}/api/v1/hooks/gitlab", json=payload, headers=headers)
    assert resp.status_code == 201, resp.text
    build = resp.json()["build"]
    link = f"{status_farm.url}/builds/{build['id']}"
    assert status_farm.wait(build["id"])["status"] == "success"
    requests = settled(host, link, "success")
    assert [r["body"]["state"] for r in requests if r["code"] == 201] == [
        "pending",
        "running",
        "success",
    ]
    for r in requests:
        assert r["path"] == f"/api/v4/projects/42/statuses/{green}"
        assert r["headers"]["private-token"] == GL_STATUS_TOKEN
        assert "authorization" not in r["headers"]
        assert r["body"]["name"] == CONTEXT and r["body"]["ref"] == "main"
        assert r["body"]["target_url"] == link


def test_an_older_status_never_overwrites_a_newer_one(
    redis_url: str, host: FakeHost, tmp_path: Path
) -> None:
    """The deliverer on its own (real Redis, the fake host): statuses out of order."""
    broker = redis_url.rsplit("/", 1)[0] + "/6"
    settings = Settings(data_dir=tmp_path, broker_url=broker, github_status_token="t")
    deliverer = Deliverer(settings, redis.Redis.from_url(broker))

    def status(link: str, state: str, seq: int) -> CommitStatus:
        return CommitStatus(
            host="github",
            api_url=host.url,
            project="octo/order",
            sha="b" * 40,
            ref="main",
            state=state,
            build_id=9,
            seq=seq,
            target_url=link,
            context=CONTEXT,
        )

    link = "http://farm.test/builds/order"
    assert deliverer.deliver(status(link, "success", 3)) == "delivered"
    assert deliverer.deliver(status(link, "running", 2)) == "superseded"  # late: dropped
    assert deliverer.deliver(status(link, "success", 4)) == "unchanged"  # shown already
    assert deliverer.deliver(status(link, "failed", 5)) == "delivered"
    assert [r["body"]["state"] for r in host.of(link)] == ["success", "failure"]

    # "running" and "success" of one build delivered at once, many times over: the host
    # never ends on "running".
    for i in range(10):
        race = f"http://farm.test/builds/race-{i}"
        results = at_once_two(
            lambda r=race: deliverer.deliver(status(r, "running", 1)),
            lambda r=race: deliverer.deliver(status(r, "success", 2)),
        )
        assert set(results) <= {"delivered", "superseded"}, results
        assert host.of(race)[-1]["body"]["state"] == "success"


def at_once_two(first: Any, second: Any) -> list[str]:
    """Run two calls on two threads released together; their results."""
    barrier = threading.Barrier(2)
    results: list[str] = []

    def run(call: Any) -> None:
        barrier.wait()
        results.append(call())

    threads = [threading.Thread(target=run, args=(c,)) for c in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results
