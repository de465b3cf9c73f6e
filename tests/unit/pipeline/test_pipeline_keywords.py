"""Job keywords: values, normalisation and the messages for wrong or unsupported ones."""

from __future__ import annotations

import pytest
from pipeline_testkit import errors, load, messages

from farm.pipeline.checks import glob_match, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1h 30m", 5400),
        ("3600", 3600),
        (3600, 3600),
        ("10 minutes 30 seconds", 630),
        ("2 hours", 7200),
        ("1 day", 86400),
        ("1 week", 604800),
        ("30 min", 1800),
        ("1h30m", 5400),
        ("1 hour and 5 minutes", 3900),
    ],
)
def test_durations(text: str | int, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["soon", "", "1 fortnight", "-5", True, None])
def test_bad_durations(bad: object) -> None:
    assert parse_duration(bad) is None


def test_globs() -> None:
    assert glob_match("src/**/*.py", "src/a/b/c.py")
    assert glob_match("src/**/*.py", "src/c.py")
    assert not glob_match("src/*.py", "src/a/c.py")
    assert glob_match("*.{yml,yaml}", "x.yaml")
    assert glob_match("/Dockerfile", "Dockerfile")


def test_full_job() -> None:
    p = load(
        """
        variables:
          REGISTRY: registry.example.com
          TAG: "1.0"
        job:
          image:
            name: $REGISTRY/tool:$TAG
            entrypoint: [""]
          services:
            - postgres:16
            - name: redis:7
              alias: cache,kv
              command: ["redis-server", "--appendonly", "yes"]
          before_script: echo before
          script:
            - echo one
            - [echo two, echo three]
          after_script: [echo after]
          variables:
            DB_URL: postgres://$DB_HOST/db
            DB_HOST: postgres
            LITERAL: {value: "$HOME", expand: false}
            UNKNOWN: "$NOT_DEFINED/x"
            ESCAPED: "$$HOME"
          timeout: 1h 30m
          retry: {max: 2, when: [script_failure], exit_codes: [137]}
          allow_failure: {exit_codes: [42, 43]}
          tags: [docker, linux]
          interruptible: true
          resource_group: deploy-$TAG
          environment:
            name: review/$CI_COMMIT_REF_SLUG
            url: https://$CI_COMMIT_REF_SLUG.example.com
            action: start
            deployment_tier: development
          coverage: '/Coverage: \\d+%/'
          artifacts:
            name: report-$TAG
            paths: [dist/]
            exclude: [dist/*.tmp]
            untracked: false
            when: always
            expire_in: never
            reports:
              dotenv: build.env
              junit: report.xml
              coverage_report: {coverage_format: cobertura, path: cov.xml}
          cache:
            - key:
                files: [poetry.lock]
                prefix: py
              paths: [.venv]
              policy: pull
              fallback_keys: [py-main]
            - key: $CI_COMMIT_REF_SLUG
              paths: [node_modules]
        """,
        variables={"CI_COMMIT_REF_SLUG": "feat-x"},
    )
    job = p.job("job")
    assert job.image == "registry.example.com/tool:1.0"
    assert job.image_entrypoint == ("",)
    assert [s.name for s in job.services] == ["postgres:16", "redis:7"]
    assert job.services[1].alias == ("cache", "kv")
    assert job.services[1].command == ("redis-server", "--appendonly", "yes")
    assert job.before_script == ("echo before",)
    assert job.script == ("echo one", "echo two", "echo three")
    assert job.variables["DB_URL"] == "postgres://postgres/db"
    assert job.variables["LITERAL"] == "$HOME"
    assert job.variables["UNKNOWN"] == "$NOT_DEFINED/x"
    assert job.variables["ESCAPED"] == "$HOME"
    assert job.timeout == 5400
    assert (job.retry.max, job.retry.when, job.retry.exit_codes) == (2, ("script_failure",), (137,))
    assert (job.allow_failure, job.allow_failure_exit_codes) == (False, (42, 43))
    assert job.tags == ("docker", "linux") and job.interruptible
    assert job.resource_group == "deploy-1.0"
    assert job.environment is not None
    assert job.environment.name == "review/feat-x"
    assert job.environment.url == "https://feat-x.example.com"
    assert job.environment.deployment_tier == "development"
    assert job.coverage == r"/Coverage: \d+%/"
    art = job.artifacts
    assert art is not None
    assert (art.name, art.paths, art.exclude, art.when, art.expire_in) == (
        "report-1.0",
        ("dist/",),
        ("dist/*.tmp",),
        "always",
        None,
    )
    assert art.dotenv == ("build.env",)
    assert job.cache[0].key_files == ("poetry.lock",) and job.cache[0].key_prefix == "py"
    assert job.cache[0].policy == "pull" and job.cache[0].fallback_keys == ("py-main",)
    assert job.cache[1].key == "feat-x"
    assert job.script == ("echo one", "echo two", "echo three")  # scripts are never expanded


def test_scripts_keep_variables_for_the_shell() -> None:
    p = load("variables: {A: x}\njob:\n  script: echo $A ${A}\n")
    assert p.job("job").script == ("echo $A ${A}",)


def test_variable_cycles_are_left_as_written() -> None:
    p = load("job:\n  variables: {A: $B, B: $A}\n  script: x\n")
    assert set(p.job("job").variables.values()) <= {"$A", "$B"}


def test_string_environment_and_image() -> None:
    p = load("job:\n  image: alpine:3\n  environment: production\n  script: x\n")
    assert p.job("job").image == "alpine:3"
    assert p.job("job").environment is not None and p.job("job").environment.name == "production"


def test_unsupported_keywords_are_named_with_lines() -> None:
    diags = errors("""
        job:
          script: x
          release:
            tag_name: v1
          secrets: {}
          scirpt: y
        trig:
          trigger: other/project
    """)
    found = [(d.line, d.message) for d in diags]
    # release and secrets are accepted with a warning (docs/GITLAB_COMPAT.md)
    assert found[0][0] == 7 and "did you mean 'script'" in found[0][1]
    assert found[1][0] == 9
    assert found[1][1].startswith("trigger is not supported by farm (job 'trig')")
    assert len(found) == 2


def test_job_without_script_and_non_mapping_job() -> None:
    text = messages("build:\n  stage: build\nthing: 3\n")
    assert ".gitlab-ci.yml:2:3: job 'build' has no script" in text
    assert ".gitlab-ci.yml:3:1: job 'thing' must be a mapping with script:" in text


@pytest.mark.parametrize(
    ("snippet", "fragment"),
    [
        ("when: later", "when must be one of"),
        ("when: delayed", "needs start_in"),
        ("start_in: 5 minutes", "only be used with when: delayed"),
        ("retry: 5", "retry must be a whole number from 0 to 2"),
        ("retry: {max: 1, when: [bad]}", "retry:when 'bad' is unknown"),
        ("timeout: soon", "not a duration"),
        ("tags: docker", "tags must be a list of strings"),
        ("interruptible: maybe", "interruptible must be true or false"),
        ("variables: {A: true}", "quote it"),
        ("variables: [A]", "must be a mapping"),
        ("image: [x]", "image must be a string"),
        ("services: postgres", "services must be a list"),
        ("cache: {key: a/b}", "cannot contain '/'"),
        ("cache: {policy: sometimes}", "cache:policy must be one of"),
        ("artifacts: {paths: [a], expire_in: later}", "artifacts:expire_in"),
        ("artifacts: {reports: {nonsense: x}}", "unknown artifacts:reports type"),
        ("artifacts: {bogus: 1}", "unknown key 'bogus' in artifacts"),
        ("environment: {name: x, action: explode}", "environment:action"),
        ("coverage: 'no slashes'", "coverage must be a /regex/"),
        ("allow_failure: sometimes", "allow_failure must be true or false"),
        ("parallel: 500", "parallel must be a whole number from 1 to 200"),
        ("parallel: {matrix: []}", "non-empty list"),
        ("needs: build", "needs must be a list"),
        ("needs: [{pipeline: other}]", "needs:pipeline is not supported"),
        ("inherit: {default: [bogus]}", "unknown keyword 'bogus'"),
        ("script: []", "empty script"),
        ("script: " + "[" * 12 + "x" + "]" * 12, "must be a string"),
    ],
)
def test_keyword_errors(snippet: str, fragment: str) -> None:
    key = snippet.split(":", 1)[0]
    body = snippet if key == "script" else f"script: x\n  {snippet}"
    diags = errors(f"job:\n  {body}\n")
    assert any(fragment in d.message for d in diags), [str(d) for d in diags]
    assert all(d.line >= 2 for d in diags)


def test_job_name_too_long() -> None:
    assert "longer than 255" in messages(f"{'j' * 256}:\n  script: x\n")


def test_every_problem_is_reported_at_once() -> None:
    diags = errors("""
        a:
          stage: nope
          script: x
        b:
          script: x
          timeout: never-ever
        c:
          needs: [ghost]
          script: x
    """)
    assert [d.line for d in diags] == [3, 7, 9]
