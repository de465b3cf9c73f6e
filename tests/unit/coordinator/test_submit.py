"""submit(): a commit of a tiny real git repository becomes a stored, started build."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import textwrap
from pathlib import Path

import pytest
from coordinator_kit import Rig

from farm.coordinator.service import digest_text
from farm.coordinator.submit import Submission, submit
from farm.domain.statuses import BuildStatus, JobStatus
from farm.errors import PipelineError, SourceError

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


class Repo:
    """A work tree on branch ``main``; each :meth:`commit` writes files and commits them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir()
        self._git("init", "-q", "-b", "main")

    def _git(self, *args: str) -> str:
        proc = subprocess.run(
            ["git", "-C", str(self.path), *args],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, **_GIT_ENV},
        )
        return proc.stdout.strip()

    def commit(self, files: dict[str, str], message: str = "change") -> str:
        for name, text in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(textwrap.dedent(text))
        self._git("add", "-A")
        self._git("commit", "-q", "--no-gpg-sign", "-m", message)
        return self._git("rev-parse", "HEAD")


PIPELINE = """
stages: [build, test]
compile:
  stage: build
  script: [make]
unit:
  stage: test
  script: [make test]
only_main:
  stage: test
  script: [echo main]
  rules:
    - if: $CI_COMMIT_BRANCH == "main"
"""


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path / "data")


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo(tmp_path / "app")


def test_submit_stores_and_starts_the_build(rig: Rig, repo: Repo) -> None:
    sha = repo.commit({".gitlab-ci.yml": PIPELINE, "src/main.c": "int main() {}\n"})
    build = submit(rig.coord, Submission(repo=str(repo.path), variables=(("K", "v"),)))
    assert (build.project, build.ref, build.commit) == ("app", "main", sha)
    assert build.status == BuildStatus.PENDING
    assert build.pipeline_file == ".gitlab-ci.yml"
    assert build.pipeline_digest == digest_text(textwrap.dedent(PIPELINE))
    assert build.variables == {"K": "v"}
    assert [(j.name, j.status) for j in build.jobs] == [
        ("compile", JobStatus.PENDING),
        ("unit", JobStatus.CREATED),
        ("only_main", JobStatus.CREATED),  # rules saw CI_COMMIT_BRANCH=main
    ]
    assert rig.dispatched(build.id) == ["compile"]
    with tarfile.open(fileobj=io.BytesIO(rig.blobs.blobs[build.snapshot_digest])) as tar:
        assert sorted(m.name for m in tar.getmembers() if m.isfile()) == [
            ".gitlab-ci.yml",
            "src/main.c",
        ]


def test_same_tree_same_snapshot(rig: Rig, repo: Repo) -> None:
    repo.commit({".gitlab-ci.yml": PIPELINE})
    one = submit(rig.coord, Submission(repo=str(repo.path)))
    two = submit(rig.coord, Submission(repo=str(repo.path)))
    assert one.snapshot_digest == two.snapshot_digest
    assert len(rig.blobs.blobs) == 1  # one snapshot, stored once


def test_farm_ci_file_wins(rig: Rig, repo: Repo) -> None:
    repo.commit({".gitlab-ci.yml": PIPELINE, ".farm-ci.yml": "farm_only: {script: [x]}\n"})
    build = submit(rig.coord, Submission(repo=str(repo.path)))
    assert build.pipeline_file == ".farm-ci.yml"
    assert [j.name for j in build.jobs] == ["farm_only"]


def test_secrets_reach_rules_but_not_job_specs(rig: Rig, repo: Repo) -> None:
    repo.commit(
        {
            ".gitlab-ci.yml": """
            deploy:
              script: [deploy]
              rules:
                - if: $TOKEN
            """
        }
    )
    build = submit(rig.coord, Submission(repo=str(repo.path), secrets=(("TOKEN", "s3cret"),)))
    (job,) = build.jobs
    assert build.secrets == {"TOKEN": "s3cret"}
    assert "TOKEN" not in job.spec.variables and "TOKEN" not in build.variables


def test_repository_without_a_pipeline_file_is_refused(rig: Rig, repo: Repo) -> None:
    repo.commit({"README": "hi\n"})
    with pytest.raises(SourceError, match=r"no \.farm-ci\.yml or \.gitlab-ci\.yml"):
        submit(rig.coord, Submission(repo=str(repo.path)))
    assert rig.store.list_builds() == [] and rig.blobs.blobs == {}


def test_invalid_pipeline_leaves_nothing_behind(rig: Rig, repo: Repo) -> None:
    repo.commit({".gitlab-ci.yml": "job:\n  script: [x]\n  needs: [missing]\n"})
    with pytest.raises(PipelineError, match=r"\.gitlab-ci\.yml:\d+"):
        submit(rig.coord, Submission(repo=str(repo.path)))
    assert rig.store.list_builds() == [] and rig.blobs.blobs == {}


def test_pipeline_without_jobs_for_the_ref_is_refused(rig: Rig, repo: Repo) -> None:
    repo.commit({".gitlab-ci.yml": "job:\n  script: [x]\n  rules:\n    - if: $CI_COMMIT_TAG\n"})
    with pytest.raises(PipelineError, match="no pipeline is created"):
        submit(rig.coord, Submission(repo=str(repo.path)))
    assert rig.store.list_builds() == []


def test_unknown_repository_and_commit(rig: Rig, repo: Repo, tmp_path: Path) -> None:
    repo.commit({".gitlab-ci.yml": PIPELINE})
    with pytest.raises(SourceError, match="does not exist"):
        submit(rig.coord, Submission(repo=str(tmp_path / "nope")))
    with pytest.raises(SourceError, match="does not exist"):
        submit(rig.coord, Submission(repo=str(repo.path), commit="f" * 40))


def test_newer_build_auto_cancels_an_interruptible_one(rig: Rig, repo: Repo) -> None:
    text = "test:\n  script: [x]\n  interruptible: true\n"
    repo.commit({".gitlab-ci.yml": text})
    old = submit(rig.coord, Submission(repo=str(repo.path)))
    rig.claim(old.id, "test")
    repo.commit({".gitlab-ci.yml": text + "# newer\n"})
    new = submit(rig.coord, Submission(repo=str(repo.path)))
    canceled = rig.build(old.id)
    assert canceled.status == BuildStatus.CANCELED
    assert canceled.error == f"auto-canceled: build {new.id} is newer"
    assert rig.build(new.id).status == BuildStatus.PENDING


def test_builds_without_interruptible_jobs_are_kept(rig: Rig, repo: Repo) -> None:
    repo.commit({".gitlab-ci.yml": "test: {script: [x]}\n"})
    old = submit(rig.coord, Submission(repo=str(repo.path)))
    repo.commit({".gitlab-ci.yml": "test: {script: [y]}\n"})
    submit(rig.coord, Submission(repo=str(repo.path)))
    assert rig.build(old.id).status == BuildStatus.PENDING
