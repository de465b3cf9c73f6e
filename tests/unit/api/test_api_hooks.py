"""``/api/v1/hooks``: GitHub and GitLab webhooks on the real app (recording dispatcher).

No test reaches the internet: the payloads' clone URLs point at a local repository
through ``file://``, a scheme these tests allow (``FARM_HOOK_ALLOWED_URL_SCHEMES``);
production's default allows only network URLs, and a local path is always refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from tests.farmtest import commit_files, git, make_repo
from tests.unit.api.conftest import RecordingDispatcher, TestClient, farm_settings

GH_SECRET = "gh-secret-for-tests"
GL_TOKEN = "gl-token-for-tests"
ZEROS = "0" * 40

# Which jobs run tells which CI_PIPELINE_SOURCE the build saw.
PIPELINE = """\
stages: [test]
always:
  script: [make]
on_push:
  script: [make push]
  rules:
    - if: $CI_PIPELINE_SOURCE == "push"
on_mr:
  script: [make mr]
  rules:
    - if: $CI_PIPELINE_SOURCE == "merge_request_event"
"""


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "github_webhook_secret": GH_SECRET,
        "gitlab_webhook_token": GL_TOKEN,
        "hook_allowed_url_schemes": ["https", "ssh", "git", "file"],
    }


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """A repository with :data:`PIPELINE` on ``main``."""
    return make_repo(tmp_path / "hooked", {".farm-ci.yml": PIPELINE})


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


def url(repo: Path) -> str:
    return f"file://{repo}"


def github(
    client: TestClient,
    event: str,
    payload: dict[str, Any],
    delivery: str = "d-1",
    secret: str | None = GH_SECRET,
) -> Any:
    body = json.dumps(payload).encode()
    headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery}
    headers["Content-Type"] = "application/json"
    if secret is not None:
        digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers["X-Hub-Signature-256"] = f"sha256={digest}"
    return client.post("/api/v1/hooks/github", content=body, headers=headers)


def gitlab(
    client: TestClient,
    event: str,
    payload: dict[str, Any],
    uuid: str | None = "u-1",
    token: str | None = GL_TOKEN,
) -> Any:
    headers = {"X-Gitlab-Event": event}
    if uuid is not None:
        headers["X-Gitlab-Event-UUID"] = uuid
    if token is not None:
        headers["X-Gitlab-Token"] = token
    return client.post("/api/v1/hooks/gitlab", json=payload, headers=headers)


def gh_push(repo: Path, ref: str = "refs/heads/main", after: str | None = None) -> dict[str, Any]:
    sha = after or head(repo)
    return {
        "ref": ref,
        "before": ZEROS,
        "after": sha,
        "deleted": sha == ZEROS,
        "repository": {"clone_url": url(repo), "full_name": "o/hooked"},
    }


def gl_push(repo: Path, ref: str = "refs/heads/main", after: str | None = None) -> dict[str, Any]:
    sha = after or head(repo)
    return {
        "object_kind": "tag_push" if ref.startswith("refs/tags/") else "push",
        "ref": ref,
        "before": ZEROS,
        "after": sha,
        "checkout_sha": None if sha == ZEROS else sha,
        "project": {"git_http_url": url(repo)},
    }


def builds(client: TestClient) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = client.get("/api/v1/builds").json()
    return found


def job_names(build: dict[str, Any]) -> set[str]:
    return {j["name"] for j in build["jobs"]}


# --- GitHub ------------------------------------------------------------------------------


def test_github_push_builds_the_pushed_commit(
    client: TestClient, shop: Path, dispatcher: RecordingDispatcher
) -> None:
    resp = github(client, "push", gh_push(shop))
    assert resp.status_code == 201, resp.text
    out = resp.json()
    assert out["outcome"] == "built"
    build = out["build"]
    assert (build["ref"], build["commit"], build["repo"]) == ("main", head(shop), url(shop))
    assert job_names(build) == {"always", "on_push"}  # CI_PIPELINE_SOURCE == "push"
    assert resp.headers["Location"] == f"/api/v1/builds/{build['id']}"
    assert dispatcher.of_build(build["id"])


def test_github_pull_request_builds_the_head(client: TestClient, shop: Path) -> None:
    git(shop, "checkout", "-q", "-b", "feature")
    sha = commit_files(shop, {"f.txt": "feature\n"})
    git(shop, "checkout", "-q", "main")
    payload = {
        "action": "synchronize",
        "number": 7,
        "pull_request": {
            "number": 7,
            "head": {"ref": "feature", "sha": sha, "repo": {"clone_url": url(shop)}},
            "base": {"ref": "main", "sha": head(shop), "repo": {"clone_url": url(shop)}},
        },
        "repository": {"clone_url": url(shop)},
    }
    resp = github(client, "pull_request", payload)
    assert resp.status_code == 201, resp.text
    build = resp.json()["build"]
    assert (build["ref"], build["commit"]) == ("feature", sha)
    assert job_names(build) == {"always", "on_mr"}  # CI_PIPELINE_SOURCE: merge_request_event
    closed = github(client, "pull_request", {**payload, "action": "closed"}, delivery="d-2")
    assert closed.status_code == 202 and closed.json()["outcome"] == "ignored"
    assert len(builds(client)) == 1


def test_github_tag_push_builds_the_tag(client: TestClient, shop: Path) -> None:
    git(shop, "tag", "v1.0")
    resp = github(client, "push", gh_push(shop, ref="refs/tags/v1.0"))
    assert resp.status_code == 201, resp.text
    build = resp.json()["build"]  # stored by its short name, as a tag (CI_COMMIT_TAG)
    assert (build["ref"], build["ref_kind"]) == ("v1.0", "tag")


@pytest.mark.parametrize("secret", [None, "wrong-secret", ""])
def test_github_bad_or_missing_signature_is_401_and_creates_nothing(
    client: TestClient, app: FastAPI, shop: Path, secret: str | None
) -> None:
    resp = github(client, "push", gh_push(shop), secret=secret)
    assert resp.status_code == 401, resp.text
    assert resp.json()["error"] == "Unauthorized"
    assert builds(client) == []
    assert app.state.hook_deliveries.count() == 0


def test_github_signature_covers_the_exact_body(client: TestClient, shop: Path) -> None:
    body = json.dumps(gh_push(shop)).encode()
    digest = hmac.new(GH_SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": "d-1",
        "X-Hub-Signature-256": f"sha256={digest}",
    }
    tampered = body.replace(b'"refs/heads/main"', b'"refs/heads/evil"')
    resp = client.post("/api/v1/hooks/github", content=tampered, headers=headers)
    assert resp.status_code == 401
    assert builds(client) == []


def test_github_replay_answers_the_first_build_and_creates_nothing(
    client: TestClient, app: FastAPI, shop: Path, dispatcher: RecordingDispatcher
) -> None:
    first = github(client, "push", gh_push(shop), delivery="same")
    assert first.status_code == 201, first.text
    sent = len(dispatcher.sent)
    again = github(client, "push", gh_push(shop), delivery="same")
    assert again.status_code == 200, again.text
    assert again.json()["outcome"] == "replayed"
    assert again.json()["build"]["id"] == first.json()["build"]["id"]
    assert len(builds(client)) == 1
    assert len(dispatcher.sent) == sent
    assert app.state.hook_deliveries.count() == 1


def test_github_branch_deletion_builds_nothing(
    client: TestClient, app: FastAPI, shop: Path
) -> None:
    resp = github(client, "push", gh_push(shop, after=ZEROS))
    assert resp.status_code == 202, resp.text
    assert resp.json()["outcome"] == "ignored"
    assert builds(client) == []
    assert app.state.hook_deliveries.count() == 0


@pytest.mark.parametrize(
    "clone_url",
    ["/srv/repos/secret", "file:///etc", "../x", "ext::sh -c id", "git@github.com:o/r.git"],
)
def test_github_local_path_clone_url_is_422_and_creates_nothing(
    client: TestClient, app: FastAPI, shop: Path, clone_url: str, tmp_path: Path
) -> None:
    app.state.settings.hook_allowed_url_schemes = ["https", "ssh", "git"]  # production's
    payload = gh_push(shop)
    payload["repository"]["clone_url"] = clone_url
    resp = github(client, "push", payload)
    assert resp.status_code == 422, resp.text
    assert "refused" in resp.json()["detail"]
    assert builds(client) == []
    assert app.state.hook_deliveries.count() == 0


def test_github_plain_local_path_refused_even_with_file_allowed(
    client: TestClient, shop: Path
) -> None:
    payload = gh_push(shop)
    payload["repository"]["clone_url"] = str(shop)  # a path that exists on this disk
    resp = github(client, "push", payload)
    assert resp.status_code == 422, resp.text
    assert builds(client) == []


def test_github_ping_and_other_events(client: TestClient) -> None:
    pong = github(client, "ping", {"zen": "Keep it logically awesome."})
    assert pong.status_code == 200 and pong.json()["outcome"] == "pong"
    other = github(client, "issues", {"action": "opened"})
    assert other.status_code == 202 and other.json()["outcome"] == "ignored"
    assert builds(client) == []


def test_github_bad_payloads(client: TestClient, shop: Path) -> None:
    missing = github(client, "push", {"ref": "refs/heads/main"})
    assert missing.status_code == 422 and "push payload" in missing.json()["detail"]
    bad_sha = github(client, "push", gh_push(shop, after="--upload-pack=x"), delivery="d-2")
    assert bad_sha.status_code == 422
    bad_ref = github(client, "push", gh_push(shop, ref="refs/heads/-x"), delivery="d-3")
    assert bad_ref.status_code == 422
    assert builds(client) == []


def test_github_failed_submission_leaves_no_claim(
    client: TestClient, app: FastAPI, shop: Path
) -> None:
    resp = github(client, "push", gh_push(shop, after="a" * 40))  # no such commit
    assert resp.status_code == 422, resp.text
    assert app.state.hook_deliveries.count() == 0
    fixed = github(client, "push", gh_push(shop))  # the redelivery may now succeed
    assert fixed.status_code == 201, fixed.text


# --- GitLab ------------------------------------------------------------------------------


def test_gitlab_push_builds_and_replay_does_not(
    client: TestClient, shop: Path, dispatcher: RecordingDispatcher
) -> None:
    resp = gitlab(client, "Push Hook", gl_push(shop))
    assert resp.status_code == 201, resp.text
    build = resp.json()["build"]
    assert (build["ref"], build["commit"]) == ("main", head(shop))
    assert job_names(build) == {"always", "on_push"}
    sent = len(dispatcher.sent)
    again = gitlab(client, "Push Hook", gl_push(shop))
    assert again.status_code == 200 and again.json()["build"]["id"] == build["id"]
    assert len(builds(client)) == 1 and len(dispatcher.sent) == sent


def test_gitlab_without_event_uuid_dedupes_on_commit_and_ref(
    client: TestClient, shop: Path
) -> None:
    first = gitlab(client, "Push Hook", gl_push(shop), uuid=None)
    assert first.status_code == 201, first.text
    again = gitlab(client, "Push Hook", gl_push(shop), uuid=None)
    assert again.status_code == 200
    assert len(builds(client)) == 1


def test_gitlab_tag_push(client: TestClient, shop: Path) -> None:
    git(shop, "tag", "v2")
    resp = gitlab(client, "Tag Push Hook", gl_push(shop, ref="refs/tags/v2"))
    assert resp.status_code == 201, resp.text
    build = resp.json()["build"]
    assert (build["ref"], build["ref_kind"]) == ("v2", "tag")


def test_gitlab_merge_request_builds_the_source_branch(client: TestClient, shop: Path) -> None:
    git(shop, "checkout", "-q", "-b", "topic")
    sha = commit_files(shop, {"t.txt": "topic\n"})
    git(shop, "checkout", "-q", "main")
    attrs = {
        "action": "open",
        "source_branch": "topic",
        "target_branch": "main",
        "last_commit": {"id": sha},
        "source": {"git_http_url": url(shop)},
    }
    payload = {"object_kind": "merge_request", "project": {"git_http_url": url(shop)}}
    resp = gitlab(client, "Merge Request Hook", {**payload, "object_attributes": attrs})
    assert resp.status_code == 201, resp.text
    build = resp.json()["build"]
    assert (build["ref"], build["commit"]) == ("topic", sha)
    assert job_names(build) == {"always", "on_mr"}
    # An update without new commits (a title edit) and a merge build nothing.
    for n, action in enumerate(("update", "merge")):
        other = {**payload, "object_attributes": {**attrs, "action": action}}
        resp = gitlab(client, "Merge Request Hook", other, uuid=f"u-{n + 2}")
        assert resp.status_code == 202 and resp.json()["outcome"] == "ignored"
    assert len(builds(client)) == 1


@pytest.mark.parametrize("token", [None, "wrong", GL_TOKEN + "x"])
def test_gitlab_bad_or_missing_token_is_401_and_creates_nothing(
    client: TestClient, app: FastAPI, shop: Path, token: str | None
) -> None:
    resp = gitlab(client, "Push Hook", gl_push(shop), token=token)
    assert resp.status_code == 401, resp.text
    assert builds(client) == []
    assert app.state.hook_deliveries.count() == 0


def test_gitlab_branch_deletion_and_local_path(client: TestClient, shop: Path) -> None:
    deleted = gitlab(client, "Push Hook", gl_push(shop, after=ZEROS))
    assert deleted.status_code == 202, deleted.text
    payload = gl_push(shop)
    payload["project"]["git_http_url"] = str(shop)
    local = gitlab(client, "Push Hook", payload, uuid="u-2")
    assert local.status_code == 422, local.text
    other = gitlab(client, "Note Hook", {"object_kind": "note"}, uuid="u-3")
    assert other.status_code == 202
    assert builds(client) == []


# --- off unless configured ---------------------------------------------------------------


def test_hooks_are_off_without_their_secrets(tmp_path: Path, shop: Path) -> None:
    from farm.api.app import create_app

    app = create_app(farm_settings(tmp_path / "off"), dispatcher=RecordingDispatcher())
    with TestClient(app) as client:
        assert github(client, "push", gh_push(shop)).status_code == 404
        assert gitlab(client, "Push Hook", gl_push(shop)).status_code == 404
        assert builds(client) == []


def test_body_over_the_limit_is_413_before_it_is_signed(client: TestClient, app: FastAPI) -> None:
    limit = app.state.settings.max_request_bytes
    resp = github(client, "push", {"pad": "x" * (limit + 1)})
    assert resp.status_code == 413
    assert builds(client) == []
