"""assignment() is pure: records and settings in, the worker's typed Assignment out."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from farm.coordinator.assignment import DEFAULT_IMAGE, assignment, job_variables
from farm.domain.messages import PROTOCOL_VERSION, Assignment
from farm.domain.records import ArtifactRecord, BuildRecord, JobRecord
from farm.domain.specs import ArtifactSpec, CacheSpec, JobSpec, Need, ServiceSpec
from farm.domain.statuses import ArtifactKind, BuildStatus, JobStatus
from farm.settings import Settings

NOW = datetime(2024, 1, 1, tzinfo=UTC)
STAGES = ("build", "test", "deploy")


def digest(c: str) -> str:
    return "sha256:" + c * 64


def artifact(job_id: int, name: str, kind: str, c: str, size: int = 10) -> ArtifactRecord:
    return ArtifactRecord(
        id=job_id * 10 + len(name),
        build_id=1,
        job_id=job_id,
        name=name,
        kind=kind,
        digest=digest(c),
        size=size,
        created_at=NOW,
    )


def job(
    job_id: int, spec: JobSpec, artifacts: tuple[ArtifactRecord, ...] = (), attempt: int = 1
) -> JobRecord:
    return JobRecord(
        id=job_id,
        build_id=1,
        name=spec.name,
        stage=spec.stage,
        position=job_id,
        spec=spec,
        status=JobStatus.SUCCESS if artifacts else JobStatus.RUNNING,
        attempt=attempt,
        queue="default",
        worker="w1",
        artifacts=artifacts,
    )


def build(*jobs: JobRecord, **over: Any) -> BuildRecord:
    fields: dict[str, Any] = {
        "id": 1,
        "project": "demo",
        "repo": "/srv/git/demo.git",
        "ref": "feature/X",
        "commit": "0123456789abcdef0123456789abcdef01234567",
        "status": BuildStatus.RUNNING,
        "created_at": NOW,
        "pipeline_file": ".farm-ci.yml",
        "pipeline_digest": digest("d"),
        "snapshot_digest": digest("e"),
        "stages": STAGES,
        "jobs": jobs,
    }
    fields.update(over)
    return BuildRecord(**fields)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        api_url="http://127.0.0.1:8700",
        job_timeout=600,
        job_memory=512 * 1024**2,
        job_cpus=0.5,
        job_pids=64,
    )


# Two upstream jobs with artifacts (an archive and a dotenv each; compile also has
# kinds a job never receives) and one in the same stage as the jobs under test.
COMPILE = job(
    1,
    JobSpec(name="compile", stage="build", script=("make",)),
    (
        artifact(1, "compile", ArtifactKind.ARCHIVE, "1"),
        artifact(1, "compile.env", ArtifactKind.DOTENV, "2", size=0),
        artifact(1, "deliverable.json", ArtifactKind.DELIVERABLE, "3"),
        artifact(1, "provenance", ArtifactKind.PROVENANCE, "4"),
    ),
)
DOCS = job(
    2,
    JobSpec(name="docs", stage="build", script=("make docs",)),
    (artifact(2, "docs", ArtifactKind.ARCHIVE, "5"),),
)
LINT = job(
    3,
    JobSpec(name="lint", stage="test", script=("make lint",)),
    (artifact(3, "lint", ArtifactKind.ARCHIVE, "6"),),
)


def inputs_of(spec: JobSpec, settings: Settings) -> list[tuple[str, str, str]]:
    target = job(9, spec)
    got = assignment(build(COMPILE, DOCS, LINT, target), target, settings)
    return [(i.job, i.name, i.kind) for i in got.inputs]


def test_without_needs_a_job_gets_every_earlier_stage_job_s_files(settings: Settings) -> None:
    spec = JobSpec(name="test", stage="test", script=("make test",))
    assert inputs_of(spec, settings) == [
        ("compile", "compile", "archive"),
        ("compile", "compile.env", "dotenv"),
        ("docs", "docs", "archive"),
    ]  # not lint (same stage), never deliverables or provenance


def test_needs_give_only_the_needed_jobs_with_artifacts(settings: Settings) -> None:
    spec = JobSpec(
        name="test",
        stage="test",
        script=("x",),
        needs=(Need("docs"), Need("compile", artifacts=False)),
    )
    assert inputs_of(spec, settings) == [("docs", "docs", "archive")]
    nothing = JobSpec(name="test", stage="test", script=("x",), needs=())
    assert inputs_of(nothing, settings) == []


def test_dependencies_win_over_needs_and_stages(settings: Settings) -> None:
    spec = JobSpec(
        name="deploy",
        stage="deploy",
        script=("x",),
        needs=(Need("docs"),),
        dependencies=("lint", "compile", "not-in-this-build"),
    )
    assert inputs_of(spec, settings) == [
        ("lint", "lint", "archive"),
        ("compile", "compile", "archive"),
        ("compile", "compile.env", "dotenv"),
    ]
    none = JobSpec(name="deploy", stage="deploy", script=("x",), dependencies=())
    assert inputs_of(none, settings) == []


def test_variables_predefined_then_yaml_then_submitted_then_secrets(settings: Settings) -> None:
    spec = JobSpec(
        name="test",
        stage="test",
        script=("x",),
        variables={"A": "yaml", "B": "yaml", "CI_COMMIT_REF_NAME": "from-yaml"},
    )
    target = job(9, spec, attempt=3)
    b = build(target, variables={"B": "submitted", "C": "submitted"}, secrets={"C": "secret"})
    env = assignment(b, target, settings).variables
    assert (env["A"], env["B"], env["C"]) == ("yaml", "submitted", "secret")
    assert env["CI_COMMIT_REF_NAME"] == "from-yaml"  # YAML overrides predefined
    assert env["CI_COMMIT_REF_SLUG"] == "feature-x"
    assert (env["CI_JOB_ID"], env["CI_JOB_ATTEMPT"], env["CI_PIPELINE_ID"]) == ("9", "3", "1")
    assert env["CI_API_V4_URL"] == "http://127.0.0.1:8700/api/v1"
    assert env["CI_PROJECT_DIR"] == "/builds/demo"
    assert env == job_variables(b, target, settings)


def test_masks_are_secrets_of_four_chars_or_more_longest_first(settings: Settings) -> None:
    target = job(9, JobSpec(name="t", stage="test", script=("x",)))
    secrets = {"a": "abc", "b": "abcd", "c": "a-much-longer-one", "d": "abcd", "e": "12345"}
    got = assignment(build(target, secrets=secrets), target, settings)
    assert got.masks == ["a-much-longer-one", "12345", "abcd"]


@pytest.mark.parametrize(("asked", "given"), [(None, 600), (30, 30), (600, 600), (7200, 600)])
def test_timeout_is_the_job_s_capped_by_the_farm_s(
    settings: Settings, asked: int | None, given: int
) -> None:
    target = job(9, JobSpec(name="t", stage="test", script=("x",), timeout=asked))
    assert assignment(build(target), target, settings).timeout == given


def test_assignment_carries_everything_the_worker_needs(settings: Settings) -> None:
    spec = JobSpec(
        name="test",
        stage="test",
        script=("make test",),
        before_script=("setup",),
        after_script=("teardown",),
        image="python:3.11",
        image_entrypoint=("",),
        coverage=r"/TOTAL.*\s(\d+)%/",
        artifacts=ArtifactSpec(paths=("dist/",), expire_in=3600, dotenv=("out.env",)),
        cache=(CacheSpec(key_files=("lock",), paths=(".cache",)), CacheSpec(key="k")),
        services=(ServiceSpec(name="redis:7", alias=("cache",)),),
    )
    target = job(9, spec, attempt=2)
    got = assignment(build(COMPILE, target), target, settings)
    assert isinstance(got, Assignment)
    assert got.protocol == PROTOCOL_VERSION
    assert (got.job_id, got.attempt, got.build_id, got.name, got.stage) == (
        9,
        2,
        1,
        "test",
        "test",
    )
    assert (got.project, got.project_dir, got.image) == ("demo", "/builds/demo", "python:3.11")
    assert got.image_entrypoint == [""]
    assert (got.before_script, got.script, got.after_script) == (
        ["setup"],
        ["make test"],
        ["teardown"],
    )
    assert got.snapshot_digest == digest("e")
    assert got.coverage == spec.coverage
    assert got.limits.model_dump() == {"memory": 512 * 1024**2, "cpus": 0.5, "pids": 64}
    # artifacts/cache/services go out exactly as the job spec serialises them.
    legacy = json.loads(json.dumps(spec.to_dict()))
    sent = json.loads(got.model_dump_json())
    for key in ("artifacts", "cache", "services"):
        assert sent[key] == legacy[key], key
    assert got.services[0].to_spec() == spec.services[0]


def test_defaults_for_a_bare_job(settings: Settings) -> None:
    target = job(9, JobSpec(name="t", stage="build", script=("x",)))
    got = assignment(build(target), target, settings)
    assert got.image == DEFAULT_IMAGE
    assert got.image_entrypoint is None and got.artifacts is None and got.coverage is None
    assert (got.inputs, got.cache, got.services, got.masks) == ([], [], [], [])


def test_assignment_is_pure(settings: Settings) -> None:
    """Same records in, equal assignment out; the records are left as they were."""
    target = job(9, JobSpec(name="t", stage="test", script=("x",)))
    b = build(COMPILE, DOCS, target, secrets={"k": "secret-value"})
    before = dataclasses.asdict(b)
    assert assignment(b, target, settings) == assignment(b, target, settings)
    assert dataclasses.asdict(b) == before
