"""Webhook builds remember where they came from, and their status changes are queued
for the git host (numbered, token-free) — on the real app, with a recording "Celery"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from farm.api.commit_status import CommitStatusNotifier
from farm.coordinator.service import JobResult
from farm.domain.records import BuildOrigin
from farm.domain.state import STATUS_QUEUE
from farm.githost.status import STATUS_TASK
from tests.unit.api.conftest import TestClient
from tests.unit.api.test_api_hooks import GH_SECRET, GL_TOKEN, gh_push, github, gitlab, gl_push


class Sent:
    """Celery's ``send_task``, recorded."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def send_task(self, name: str, args: tuple[Any, ...], **options: Any) -> None:
        self.calls.append({"name": name, "message": args[0], **options})


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "github_webhook_secret": GH_SECRET,
        "gitlab_webhook_token": GL_TOKEN,
        "hook_allowed_url_schemes": ["https", "file"],
        "github_api_url": "http://127.0.0.1:9/gh",
        "github_status_token": "gh-token-never-sent",
        "gitlab_status_token": "gl-token-never-sent",
    }


@pytest.fixture
def sent(app: FastAPI) -> Sent:
    recorder = Sent()
    for hook in app.state.coordinator.on_build_changed:
        if isinstance(hook, CommitStatusNotifier):
            hook.celery = recorder
    return recorder


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    from tests.farmtest import make_repo

    return make_repo(tmp_path / "hooked", {".farm-ci.yml": "t:\n  script: [make]\n"})


def test_github_build_records_origin_and_queues_numbered_statuses(
    app: FastAPI, client: TestClient, shop: Path, sent: Sent
) -> None:
    resp = github(client, "push", gh_push(shop))
    assert resp.status_code == 201, resp.text
    build = resp.json()["build"]
    assert build["source"] == "push"
    stored = app.state.store.get_build(build["id"])
    assert stored.origin == BuildOrigin("github", "http://127.0.0.1:9/gh", "o/hooked")
    coord = app.state.coordinator  # the worker's part, straight to the coordinator
    job = build["jobs"][0]["id"]
    assert coord.claim(job, 1, "w@test") is not None
    coord.finish(job, 1, JobResult(exit_code=0))
    states = [(c["message"]["state"], c["message"]["seq"]) for c in sent.calls]
    assert states == [("pending", 1), ("running", 2), ("success", 3)]
    for call in sent.calls:
        assert call["name"] == STATUS_TASK and call["queue"] == STATUS_QUEUE
        message = call["message"]
        assert message["target_url"] == f"http://127.0.0.1:8700/builds/{build['id']}"
        assert message["sha"] == build["commit"] and message["context"] == "farm"
        assert "never-sent" not in repr(message)


def test_gitlab_origin_from_web_url_or_the_setting(
    app: FastAPI, client: TestClient, shop: Path, sent: Sent
) -> None:
    payload = gl_push(shop)
    payload["project"].update(
        id=42, path_with_namespace="g/hooked", web_url="https://gl.example/root/g/hooked"
    )
    resp = gitlab(client, "Push Hook", payload)
    assert resp.status_code == 201, resp.text
    stored = app.state.store.get_build(resp.json()["build"]["id"])
    assert stored.origin == BuildOrigin("gitlab", "https://gl.example/root", "42")
    assert sent.calls[0]["message"]["host"] == "gitlab"
    app.state.settings.gitlab_url = "http://127.0.0.1:9/pinned"
    payload["project"].pop("id")
    again = gitlab(client, "Push Hook", payload, uuid="u-2")
    stored = app.state.store.get_build(again.json()["build"]["id"])
    assert stored.origin == BuildOrigin("gitlab", "http://127.0.0.1:9/pinned", "g/hooked")


def test_builds_without_an_origin_or_a_token_queue_nothing(
    app: FastAPI, client: TestClient, shop: Path, sent: Sent
) -> None:
    assert client.post("/api/v1/builds", json={"repo": str(shop)}).status_code == 201
    payload = gh_push(shop)
    del payload["repository"]["full_name"]
    assert github(client, "push", payload).status_code == 201
    app.state.settings.gitlab_status_token = None
    assert gitlab(client, "Push Hook", gl_push(shop)).status_code == 201  # no web_url either
    assert sent.calls == []
