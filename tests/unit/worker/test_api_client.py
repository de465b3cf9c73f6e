"""The worker's client of ``/api/v1/worker`` against the real API on uvicorn: concurrent
claims and reports share requests, each call keeps its own answer, and an API without
the batch routes is spoken to one request per call."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from farm.api.app import create_app
from farm.domain.messages import FinishReport, LogTail
from farm.worker.api_client import CoordinatorClient
from tests.farmtest import free_port, make_repo, served
from tests.unit.api.conftest import RecordingDispatcher, farm_settings

FLAT = "".join(f"j{i}:\n  script: [make {i}]\n" for i in range(6))


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = farm_settings(tmp_path_factory.mktemp("client-farm"), api_url=url)
    with served(create_app(settings, dispatcher=RecordingDispatcher()), port):
        yield url


def submit(api: str, repo: Path) -> dict[str, int]:
    """A build of :data:`FLAT`; its job ids by name."""
    with httpx.Client(base_url=api, timeout=30) as http:
        resp = http.post("/api/v1/builds", json={"repo": str(repo), "no_cache": True})
        assert resp.status_code == 201, resp.text
        return {j["name"]: j["id"] for j in resp.json()["jobs"]}


def gated(client: CoordinatorClient, waiting: int) -> list[list[Any]]:
    """Hold the client's first batch of each kind until ``waiting`` more calls queue,
    so the rest go out together; returns the batches as sent."""
    sent: list[list[Any]] = []
    for batcher in (client._claims, client._reports):
        inner = batcher.send
        first = threading.Event()

        def send(
            items: list[Any], inner: Any = inner, first: Any = first, b: Any = batcher
        ) -> Sequence[Any]:
            sent.append(list(items))
            if not first.is_set():
                first.set()
                for _ in range(1000):
                    with b._cond:
                        if len(b._queue) >= waiting:
                            break
                    threading.Event().wait(0.005)
            return inner(items)  # type: ignore[no-any-return]

        batcher.send = send
    return sent


def test_concurrent_claims_and_reports_share_requests(api: str, tmp_path: Path) -> None:
    jobs = submit(api, make_repo(tmp_path / "flat", {".farm-ci.yml": FLAT}))
    client = CoordinatorClient(api)
    sent = gated(client, waiting=5)
    ids = [jobs[f"j{i}"] for i in range(6)]
    with ThreadPoolExecutor(6) as pool:
        given = list(pool.map(lambda j: client.claim(j, 1, "batch@test"), ids))
        # The same attempts again: each is told, on its own, that it is taken.
        again = list(pool.map(lambda j: client.claim(j, 1, "batch@test"), ids[:2]))
    assert [g.job_id if g else None for g in given] == ids
    assert again == [None, None]
    assert len({g.job_token for g in given if g}) == 6
    assert sorted(len(b) for b in sent[:2]) == [1, 5]  # one went alone, five together

    def finish(g: Any) -> Any:
        tail = LogTail(data=f"{g.name} done\n", offset=0)
        report = FinishReport(attempt=1, job_token=g.job_token, exit_code=0, log=tail)
        return client.finish(g.job_id, report)

    sent.clear()
    with ThreadPoolExecutor(6) as pool:
        replies = list(pool.map(finish, given))
    assert [(r.status, r.attempt) for r in replies] == [("success", 1)] * 6
    assert sorted(len(b) for b in sent) == [1, 5]
    with httpx.Client(base_url=api) as http:
        build = http.get(f"/api/v1/jobs/{ids[0]}").json()["build_id"]
        assert http.get(f"/api/v1/builds/{build}").json()["status"] == "success"
        assert http.get(f"/api/v1/jobs/{ids[3]}/log").text == "j3 done\n"
    client.close()


class WithoutBatchRoutes(httpx.BaseTransport):
    """An API from before the batch routes: 404 for them, the rest as the real one."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.paths: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        if request.url.path.endswith(("/worker/claims", "/worker/reports")):
            return httpx.Response(404, json={"detail": "Not Found", "error": "NotFound"})
        return self.inner.handle_request(request)


def test_an_api_without_batch_routes_gets_one_request_per_call(api: str, tmp_path: Path) -> None:
    jobs = submit(api, make_repo(tmp_path / "flat", {".farm-ci.yml": FLAT}))
    client = CoordinatorClient(api)
    transport = WithoutBatchRoutes()
    client._http.raw = httpx.Client(base_url=api, transport=transport)
    gated(client, waiting=3)
    ids = [jobs[f"j{i}"] for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        given = list(pool.map(lambda j: client.claim(j, 1, "old@test"), ids))
    assert [g.job_id if g else None for g in given] == ids
    assert not client.batching
    assert sum(p.endswith("/worker/claims") for p in transport.paths) == 1  # asked once
    assert sum(p.endswith("/claim") for p in transport.paths) == 4
    client.close()
