"""Refs resolve as git resolves them; the default branch is the repository's HEAD."""

from __future__ import annotations

from pathlib import Path

import pytest

from farm.coordinator.source import default_branch, resolve, resolve_ref
from farm.coordinator.submit import predefined_variables
from tests.farmtest import git, make_repo


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = make_repo(tmp_path / "r", {"a.txt": "a\n"}, branch="trunk")
    git(root, "tag", "v1")
    git(root, "tag", "-a", "v2", "-m", "annotated")
    git(root, "branch", "both")
    git(root, "tag", "both")
    return root


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("trunk", ("trunk", "branch")),
        ("refs/heads/trunk", ("trunk", "branch")),
        ("v1", ("v1", "tag")),
        ("v2", ("v2", "tag")),
        ("refs/tags/v2", ("v2", "tag")),
        ("HEAD", ("trunk", "branch")),
        ("both", ("both", "tag")),  # git tries refs/tags/ before refs/heads/
        ("refs/heads/both", ("refs/heads/both", "branch")),  # kept unambiguous
    ],
)
def test_refs_resolve_as_git_does(repo: Path, ref: str, expected: tuple[str, str]) -> None:
    assert resolve_ref(repo, ref) == expected


def test_a_sha_given_as_ref_is_neither_branch_nor_tag(repo: Path) -> None:
    sha = git(repo, "rev-parse", "HEAD")
    assert resolve_ref(repo, sha) == (sha, "commit")


def test_the_default_branch_is_the_repositorys_head_or_its_origins(
    repo: Path, tmp_path: Path
) -> None:
    assert default_branch(repo) == "trunk"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(tmp_path / "mirror.git"))
    assert default_branch(tmp_path / "mirror.git") == "trunk"
    git(tmp_path, "clone", "-q", str(repo), str(tmp_path / "clone"))
    git(tmp_path / "clone", "checkout", "-q", "-b", "feature")
    assert default_branch(tmp_path / "clone") == "trunk"  # origin's HEAD, not the checkout


def test_rules_see_ci_commit_tag_for_a_tag_and_ci_commit_branch_for_a_branch(
    repo: Path, tmp_path: Path
) -> None:
    tag = predefined_variables(resolve(str(repo), "v2", None, tmp_path), "api")
    assert tag["CI_COMMIT_TAG"] == "v2" and "CI_COMMIT_BRANCH" not in tag
    assert (tag["CI_COMMIT_REF_NAME"], tag["CI_DEFAULT_BRANCH"]) == ("v2", "trunk")
    branch = predefined_variables(resolve(str(repo), "trunk", None, tmp_path), "api")
    assert branch["CI_COMMIT_BRANCH"] == "trunk" and "CI_COMMIT_TAG" not in branch
