"""Commit status requests for GitHub and GitLab (pure: no server needed)."""

from __future__ import annotations

import pytest

from farm.githost.status import (
    GITHUB,
    GITLAB,
    CommitStatus,
    gitlab_base_url,
    status_request,
)

SHA = "a" * 40


def status(
    host: str, state: str, project: str = "o/shop", api: str = "https://api.github.com/"
) -> CommitStatus:
    return CommitStatus(
        host=host,
        api_url=api,
        project=project,
        sha=SHA,
        ref="refs/tags/v1" if host == GITLAB else "main",
        state=state,
        build_id=7,
        seq=1,
        target_url="http://farm.example/builds/7",
        context="farm",
    )


@pytest.mark.parametrize(
    ("state", "github", "gitlab"),
    [
        ("created", "pending", "pending"),
        ("pending", "pending", "pending"),
        ("running", "pending", "running"),
        ("success", "success", "success"),
        ("failed", "failure", "failed"),
        ("canceled", "error", "canceled"),
    ],
)
def test_states_map_to_each_hosts_words(state: str, github: str, gitlab: str) -> None:
    assert status_request(status(GITHUB, state), "t").body["state"] == github
    gl = status(GITLAB, state, "42", "https://gitlab.example")
    assert status_request(gl, "t").body["state"] == gitlab


def test_github_request() -> None:
    req = status_request(status(GITHUB, "running"), "ghp_x")
    assert req.url == f"https://api.github.com/repos/o/shop/statuses/{SHA}"
    assert req.headers["Authorization"] == "Bearer ghp_x"
    assert req.headers["Accept"] == "application/vnd.github+json"
    assert req.body == {
        "state": "pending",
        "target_url": "http://farm.example/builds/7",
        "description": "farm build #7 is running",
        "context": "farm",
    }


def test_gitlab_request_encodes_the_project_path_and_names_the_ref() -> None:
    gl = status(GITLAB, "success", "group/sub/shop", "https://h.example/gitlab")
    req = status_request(gl, "glpat")
    assert req.url == f"https://h.example/gitlab/api/v4/projects/group%2Fsub%2Fshop/statuses/{SHA}"
    assert req.headers == {"PRIVATE-TOKEN": "glpat"}
    assert req.body["ref"] == "v1" and req.body["name"] == "farm"
    assert req.body["target_url"] == "http://farm.example/builds/7"


@pytest.mark.parametrize(
    ("host", "project", "api"),
    [
        (GITHUB, "o/../../x", "https://api.github.com"),  # not owner/name
        (GITHUB, "o/shop", "file:///etc"),  # not http(s)
        (GITLAB, "", "https://gitlab.example"),
    ],
)
def test_unaddressable_statuses_are_refused(host: str, project: str, api: str) -> None:
    with pytest.raises(ValueError):
        status_request(status(host, "success", project, api), "t")


def test_messages_round_trip_and_carry_no_token() -> None:
    s = status(GITHUB, "failed")
    message = s.to_message()
    assert CommitStatus.from_message(message) == s
    assert not any("token" in key for key in message)
    with pytest.raises(ValueError):
        CommitStatus.from_message({**message, "state": "exploded"})
    with pytest.raises(ValueError):
        CommitStatus.from_message({**message, "token": "x"})


def test_signature_tells_what_the_host_would_show() -> None:
    assert status(GITHUB, "created").signature == status(GITHUB, "pending").signature
    assert status(GITHUB, "pending").signature != status(GITHUB, "running").signature


def test_gitlab_base_url_from_a_projects_web_url() -> None:
    assert gitlab_base_url("https://gl.example/g/shop", "g/shop") == "https://gl.example"
    assert (
        gitlab_base_url("http://127.0.0.1:9/root/gl/g/shop", "g/shop")
        == "http://127.0.0.1:9/root/gl"
    )
    assert gitlab_base_url("https://gl.example/other", "g/shop") is None
    assert gitlab_base_url("ftp://gl.example/g/shop", "g/shop") is None
    assert gitlab_base_url(None, "g/shop") is None
