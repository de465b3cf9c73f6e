"""GitLab compatibility: image/services long forms, and what farm does with keywords it
cannot run (warnings vs refusals, docs/GITLAB_COMPAT.md) (issue 13)."""

from __future__ import annotations

from gitlab_fixtures import load_fixture, needed
from pipeline_testkit import errors, load, names

from farm.domain.specs import DockerOptions, JobSpec


def test_image_and_service_long_forms() -> None:
    p = load_fixture("image_services.gitlab-ci.yml")
    build = p.job("build")
    assert build.image == "alpine:3.19"
    assert build.image_docker == DockerOptions(platform="linux/arm64", user="1000")
    assert build.image_pull_policy == ("if-not-present",)
    integration = p.job("integration")  # default: image with entrypoint and pull_policy
    assert integration.image == "registry.example.com/tools/builder:1.4"
    assert integration.image_entrypoint == ("",)
    assert integration.image_pull_policy == ("always", "if-not-present")
    db, redis = integration.services
    assert db.name == "postgres:15" and db.alias == ("db", "postgres-db")
    assert db.entrypoint == ("docker-entrypoint.sh",)
    assert db.command == ("postgres", "-c", "fsync=off")
    assert db.variables == {"POSTGRES_PASSWORD": "secret"}
    assert db.docker == DockerOptions(platform="linux/amd64", user="postgres")
    assert db.pull_policy == ("never",)
    assert redis.name == "redis:7" and redis.docker is None
    shown = [str(w) for w in p.warnings]
    assert shown == [
        "image_services.gitlab-ci.yml:6:5: warning: image:pull_policy: always is ignored: no "
        "registry is reachable, the local image is used",
        "image_services.gitlab-ci.yml:10:3: warning: image:docker:platform linux/arm64 is not "
        "pulled: the local image must already be of that platform (the worker checks it)",
    ]


def test_spec_round_trips_with_image_options() -> None:
    job = load_fixture("image_services.gitlab-ci.yml").job("integration")
    assert JobSpec.from_dict(job.to_dict()) == job
    build = load_fixture("image_services.gitlab-ci.yml").job("build")
    assert JobSpec.from_dict(build.to_dict()) == build


def test_image_option_errors_are_located() -> None:
    found = [
        (d.line, d.message)
        for d in errors("""
            job:
              image:
                name: alpine
                docker: {platform: linux/amd64, cpus: 2}
                pull_policy: sometimes
              services:
                - name: redis
                  docker: root
              script: x
        """)
    ]
    assert found[0][0] == 5 and "unknown key 'cpus' in image:docker" in found[0][1]
    assert found[1][0] == 6 and "image:pull_policy 'sometimes' is unknown" in found[1][1]
    assert found[2][0] == 9 and "services:docker must be a mapping" in found[2][1]


def test_realworld_python_pipeline() -> None:
    p = load_fixture("realworld_python.gitlab-ci.yml")
    assert [(j.name, j.stage, j.when, j.allow_failure) for j in p.jobs] == [
        ("build", "build", "on_success", False),
        ("test", "test", "on_success", False),
        ("secret-scan", "security", "on_success", True),
        ("pages", "deploy", "on_success", False),
        ("release-job", "deploy", "manual", False),
        ("deploy-production", "deploy", "manual", False),
    ]
    assert needed(p.job("deploy-production")) == ["build", "test"]
    test = p.job("test")
    assert test.interruptible and test.retry.max == 2 and test.image == "python:3.12"
    assert test.before_script == ("pip install -r requirements.txt",)
    assert test.variables["PIP_CACHE_DIR"] == "/builds/group/shop/.cache/pip"
    assert p.job("release-job").image == "registry.gitlab.com/gitlab-org/release-cli:latest"
    ignored = [(w.line, w.message.split(" is ignored")[0]) for w in p.warnings]
    assert ignored == [
        (23, "default:hooks"),
        (26, "default:id_tokens"),
        (65, "secrets"),
        (68, "dast_configuration"),
        (75, "pages"),
        (86, "release"),
        (102, "environment:kubernetes"),
    ]


def test_realworld_filtered_by_workflow_on_a_merge_request_branch() -> None:
    p = load_fixture("realworld_python.gitlab-ci.yml", CI_COMMIT_BRANCH="feat")
    assert "pages" not in names(p) and "release-job" not in names(p)


def test_refused_keywords_and_ignored_ones() -> None:
    found = errors("""
        job:
          script: x
          run:
            - name: step
          inputs:
            a: {default: b}
          identity: google_cloud
          manual_confirmation: sure?
    """)
    messages = [(d.line, d.message.split(":")[0]) for d in found]
    assert messages == [
        (4, "run is not supported by farm (job 'job')"),
        (6, "inputs is not supported by farm (job 'job')"),
    ]
    p = load("job:\n  script: x\n  identity: google_cloud\n  id_tokens: {T: {aud: x}}\n")
    assert [w.line for w in p.warnings] == [3, 4]
