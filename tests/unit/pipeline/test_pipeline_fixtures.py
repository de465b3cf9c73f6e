"""Realistic pipeline files expand to what GitLab would create."""

from __future__ import annotations

from pathlib import Path

import pytest
from pipeline_testkit import FIXTURES, ctx, load, names, needs

from farm.domain.specs import JobSpec, Pipeline, PipelineContext
from farm.errors import PipelineFilteredOut
from farm.pipeline import explain, find_pipeline_file, load_pipeline

MAIN = {"CI_COMMIT_BRANCH": "main", "CI_COMMIT_REF_NAME": "main", "CI_DEFAULT_BRANCH": "main"}


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_python_template() -> None:
    p = load(fixture("python.gitlab-ci.yml"), variables={**MAIN, "CI_PROJECT_DIR": "/builds/app"})
    assert names(p) == ["test", "run", "pages", "deploy"]
    test = p.job("test")
    assert test.image == "python:latest"
    assert test.before_script[0] == "python --version ; pip --version"
    assert test.cache[0].paths == (".cache/pip",)
    assert test.variables["PIP_CACHE_DIR"] == "/builds/app/.cache/pip"
    assert p.job("deploy").environment is not None
    assert p.upstream(p.job("deploy")) == ("test", "run", "pages")
    feature = load(
        fixture("python.gitlab-ci.yml"),
        variables={"CI_COMMIT_BRANCH": "feat", "CI_DEFAULT_BRANCH": "main"},
    )
    assert names(feature) == ["test", "run", "deploy"]


def test_node_template() -> None:
    p = load(fixture("nodejs.gitlab-ci.yml"))
    assert names(p) == ["test_async", "test_db", "deploy"]
    assert [s.name for s in p.job("test_db").services] == [
        "mysql:latest",
        "redis:latest",
        "postgres:latest",
    ]
    assert {j.stage for j in p.jobs} == {"test", "deploy"}


def test_go_template() -> None:
    p = load(fixture("go.gitlab-ci.yml"))
    assert p.stages == (".pre", "test", "build", "deploy", ".post")
    assert [(j.name, j.stage) for j in p.jobs] == [
        ("format", "test"),
        ("compile", "build"),
        ("deploy", "deploy"),
    ]
    assert p.upstream(p.job("deploy")) == ("format", "compile")
    assert p.job("compile").artifacts is not None


def test_docker_template() -> None:
    variables = {
        **MAIN,
        "CI_REGISTRY_IMAGE": "registry.example.com/app",
        "CI_COMMIT_REF_SLUG": "main",
    }
    p = load(
        fixture("docker.gitlab-ci.yml"), variables=variables, files={"Dockerfile": "FROM alpine"}
    )
    job = p.job("docker-build")
    assert job.variables["DOCKER_IMAGE_NAME"] == "registry.example.com/app:main"
    assert job.services[0].name == "docker:dind"
    assert job.script[2].startswith('if [[ "$CI_COMMIT_BRANCH" == "$CI_DEFAULT_BRANCH" ]]; then\n')
    with pytest.raises(PipelineFilteredOut):
        load(fixture("docker.gitlab-ci.yml"), variables=variables, files={"README.md": ""})


def monorepo(variables: dict[str, str], changed: tuple[str, ...] | None) -> Pipeline:
    root = FIXTURES / "monorepo"
    files = {p.relative_to(root).as_posix(): p.read_text() for p in root.rglob("*") if p.is_file()}
    files["backend/requirements.txt"] = ""
    return load_pipeline(files[".gitlab-ci.yml"], ".gitlab-ci.yml", ctx(variables, files, changed))


def test_monorepo_on_main() -> None:
    p = monorepo(
        {**MAIN, "CI_COMMIT_SHORT_SHA": "abc123", "CI_COMMIT_REF_SLUG": "main"}, ("README.md",)
    )
    # as in GitLab, included files are merged first, so their jobs come first
    assert names(p) == [
        "backend:build",
        *[
            f"backend:test: [{v}, {db}]"
            for v in ("3.11", "3.12", "3.13")
            for db in ("postgres", "sqlite")
        ],
        "frontend:build",
        "deploy",
        "yamllint",
        "image:backend",
        "image:frontend",
    ]
    assert p.stages == (".pre", "lint", "build", "test", "package", "deploy", ".post")
    lint = p.job("yamllint")
    assert lint.tags == ("linux", "docker") and lint.retry.max == 0 and not lint.interruptible
    build = p.job("backend:build")
    assert build.image == "python:3.12-slim"
    assert build.retry.max == 2 and build.interruptible and build.tags == ("linux", "docker")
    assert build.cache[0].key_files == ("backend/requirements.txt",)
    assert build.artifacts is not None and build.artifacts.expire_in == 7 * 86400
    t = p.job("backend:test: [3.11, sqlite]")
    assert t.image == "python:3.11-slim" and t.variables["DB"] == "sqlite"
    assert needs(p, "backend:test: [3.11, sqlite]") == ["backend:build"]
    image = p.job("image:backend")
    assert image.variables["DOCKER_TLS_CERTDIR"] == "" and image.variables["IMAGE_TAG"] == "abc123"
    assert image.services[0].alias == ("docker",)
    fb = p.job("frontend:build")
    assert fb.cache[0].key == "npm-main" and fb.cache[0].policy == "pull-push"
    deploy = p.job("deploy")
    assert deploy.environment is not None
    assert (deploy.environment.name, deploy.environment.url) == (
        "staging",
        "https://staging.example.com",
    )
    assert deploy.resource_group == "staging" and deploy.timeout == 5400
    assert deploy.when == "on_success"
    assert needs(p, "deploy") == ["image:backend", "image:frontend"]


def test_monorepo_on_feature_branch_with_frontend_change() -> None:
    variables = {
        "CI_COMMIT_BRANCH": "feature/login",
        "CI_COMMIT_REF_NAME": "feature/login",
        "CI_DEFAULT_BRANCH": "main",
    }
    p = monorepo(variables, ("frontend/src/app.ts",))
    assert "deploy" not in names(p)
    assert [n for n in names(p) if n.startswith("frontend:test")] == [
        f"frontend:test {i}/3" for i in (1, 2, 3)
    ]
    assert not any(n.startswith("backend:test") for n in names(p))
    assert p.job("image:backend").variables["DEPLOY_ENV"] == "review"


def test_monorepo_tag_deploys_manually_and_other_branches_are_filtered() -> None:
    p = monorepo(
        {"CI_COMMIT_TAG": "v1.0.0", "CI_COMMIT_REF_NAME": "v1.0.0", "CI_DEFAULT_BRANCH": "main"},
        None,
    )
    deploy = p.job("deploy")
    assert deploy.when == "manual" and deploy.allow_failure is False
    assert deploy.environment is not None and deploy.environment.name == "production"
    with pytest.raises(PipelineFilteredOut):
        monorepo({"CI_COMMIT_BRANCH": "dev", "CI_DEFAULT_BRANCH": "main"}, None)


def test_explain_and_find_pipeline_file() -> None:
    p = load(fixture("go.gitlab-ci.yml"))
    rows = explain(p)
    assert rows[2] == {
        "name": "deploy",
        "stage": "deploy",
        "needs": None,
        "image": "golang:latest",
        "when": "on_success",
        "allow_failure": False,
        "matrix": {},
        "upstream": ["format", "compile"],
    }
    assert find_pipeline_file([".gitlab-ci.yml", "src/x.py", ".farm-ci.yml"]) == ".farm-ci.yml"
    assert find_pipeline_file(["./.gitlab-ci.yml"]) == ".gitlab-ci.yml"
    assert find_pipeline_file(["README.md", "sub/.gitlab-ci.yml"]) is None


def test_jobs_round_trip_through_dicts() -> None:
    p = monorepo({**MAIN}, None)
    for job in p.jobs:
        assert JobSpec.from_dict(job.to_dict()) == job


def test_fixtures_dir_is_complete() -> None:
    assert {p.name for p in Path(FIXTURES).glob("*.yml")} >= {
        "python.gitlab-ci.yml",
        "nodejs.gitlab-ci.yml",
        "go.gitlab-ci.yml",
        "docker.gitlab-ci.yml",
    }
    assert PipelineContext().changed is None
