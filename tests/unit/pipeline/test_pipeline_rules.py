"""rules:if expressions, rules clauses, workflow:rules and only/except."""

from __future__ import annotations

import pytest
from pipeline_testkit import ctx, errors, load, messages, names

from farm.errors import PipelineFilteredOut
from farm.pipeline.expressions import ExprError, compile_expression

ENV = {"BRANCH": "main", "EMPTY": "", "PATTERN": "/^ma/", "TAG": "v1.2.0"}


def ev(text: str) -> bool:
    return compile_expression(text)(ENV.get)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('$BRANCH == "main"', True),
        ("$BRANCH == 'dev'", False),
        ('$BRANCH != "dev"', True),
        ("$BRANCH", True),
        ("$EMPTY", False),
        ("$MISSING", False),
        ("$MISSING == null", True),
        ("$EMPTY == null", False),
        ('$EMPTY == ""', True),
        ("$BRANCH =~ /^MA/i", True),
        ("$BRANCH =~ /^dev/", False),
        ("$BRANCH !~ /^dev/", True),
        ("$MISSING =~ /x/", False),
        ("$MISSING !~ /x/", True),
        ("$BRANCH =~ $PATTERN", True),
        (r"$TAG =~ /^v\d+\.\d+\.\d+$/", True),
        ('$BRANCH == "dev" || $TAG && $BRANCH == "main"', True),
        ('($BRANCH == "dev" || $TAG) && $EMPTY', False),
        ('"main" == $BRANCH', True),
        ("$BRANCH == $BRANCH", True),
        ("${BRANCH} == 'main'", True),
        (r"$TAG =~ /^v(?<major>\d+)/", True),
    ],
)
def test_expressions(expr: str, expected: bool) -> None:
    assert ev(expr) is expected


@pytest.mark.parametrize(
    "bad", ["", "$A ==", "$A == 'x' &&", "($A", "$A = 'x'", "$A =~ /[/", "foo"]
)
def test_invalid_expressions(bad: str) -> None:
    with pytest.raises(ExprError):
        compile_expression(bad)


def test_first_matching_rule_wins_and_sets_attributes() -> None:
    p = load(
        """
        job:
          script: x
          rules:
            - if: $CI_COMMIT_BRANCH == "main"
              when: manual
              allow_failure: true
              variables: {TARGET: prod}
            - when: always
        """,
        variables={"CI_COMMIT_BRANCH": "main"},
    )
    job = p.job("job")
    assert (job.when, job.allow_failure, job.variables["TARGET"]) == ("manual", True, "prod")
    other = load(
        "job:\n  script: x\n  rules:\n    - if: $X\n      when: manual\n    - when: always\n"
    )
    assert other.job("job").when == "always"


def test_no_match_or_never_excludes_job() -> None:
    p = load("""
        kept:
          script: x
        gone:
          script: x
          rules:
            - if: $NOPE
        never:
          script: x
          rules:
            - when: never
        job_never:
          script: x
          when: never
    """)
    assert names(p) == ["kept"]


def test_manual_allow_failure_defaults() -> None:
    p = load(
        """
        top:
          script: x
          when: manual
        by_rule:
          script: x
          rules:
            - when: manual
        top_with_rules:
          script: x
          when: manual
          rules:
            - if: $CI
    """,
        variables={"CI": "true"},
    )
    assert p.job("top").allow_failure is True
    assert p.job("by_rule").allow_failure is False
    assert p.job("top_with_rules").when == "manual"
    assert p.job("top_with_rules").allow_failure is True


def test_delayed_rule_and_start_in() -> None:
    p = load("""
        job:
          script: x
          rules:
            - when: delayed
              start_in: 30 minutes
    """)
    assert (p.job("job").when, p.job("job").start_in) == ("delayed", 1800)
    assert "need start_in" in messages("job:\n  script: x\n  rules:\n    - when: delayed\n")


def test_changes_and_exists() -> None:
    text = """
        back:
          script: x
          rules:
            - changes: [backend/**/*]
        front:
          script: x
          rules:
            - changes:
                paths: ["frontend/*.js"]
                compare_to: main
        docker:
          script: x
          rules:
            - exists: [Dockerfile]
        nodocker:
          script: x
          rules:
            - exists: ["**/Containerfile"]
    """
    files = {"Dockerfile": "", "backend/app.py": ""}
    p = load(text, files=files, changed=("backend/api/app.py",))
    assert names(p) == ["back", "docker"]
    unknown = load(text, files=files, changed=None)  # changes are true when unknown
    assert names(unknown) == ["back", "front", "docker"]


def test_rule_needs_override() -> None:
    p = load(
        """
        a:
          stage: build
          script: x
        b:
          stage: build
          script: x
        c:
          needs: [a]
          script: x
          rules:
            - if: $FAST
              needs: [b]
            - when: on_success
    """,
        variables={"FAST": "1"},
    )
    assert [n.job for n in p.job("c").needs or ()] == ["b"]


def test_rule_errors_have_lines() -> None:
    diags = errors("""
        job:
          script: x
          rules:
            - if: $A ==
            - when: sometimes
            - iff: $A
            - just a string
    """)
    lines = sorted(d.line for d in diags)
    assert lines == [5, 6, 7, 8]
    text = "\n".join(d.message for d in diags)
    assert "invalid rules:if expression" in text
    assert "unknown key 'iff'" in text
    assert "on_success" in text


def test_workflow_rules_filter_and_set_variables() -> None:
    text = """
        workflow:
          rules:
            - if: $CI_COMMIT_BRANCH == "main"
              variables: {ENV_NAME: production}
            - if: $CI_COMMIT_BRANCH =~ /^feature/
            - when: never
        variables:
          ENV_NAME: review
        job:
          script: echo $ENV_NAME
    """
    main = load(text, variables={"CI_COMMIT_BRANCH": "main"})
    assert main.variables["ENV_NAME"] == "production"
    assert main.job("job").variables["ENV_NAME"] == "production"
    feature = load(text, variables={"CI_COMMIT_BRANCH": "feature/x"})
    assert feature.job("job").variables["ENV_NAME"] == "review"
    with pytest.raises(PipelineFilteredOut):
        load(text, variables={"CI_COMMIT_BRANCH": "dev"})


def test_all_jobs_excluded_is_filtered_out() -> None:
    with pytest.raises(PipelineFilteredOut):
        load("job:\n  script: x\n  rules:\n    - if: $NOPE\n")


def test_only_and_except() -> None:
    text = """
        main_only:
          script: x
          only: [main]
        release:
          script: x
          only:
            - /^release-.*$/
        not_main:
          script: x
          except: [main]
        tags_only:
          script: x
          only: [tags]
        branches:
          script: x
          only:
            refs: [branches]
            variables: [$DEPLOY == "yes"]
    """
    main = load(text, variables={"CI_COMMIT_REF_NAME": "main", "DEPLOY": "yes"})
    assert names(main) == ["main_only", "branches"]
    rel = load(
        text, ctx(variables={"CI_COMMIT_REF_NAME": "release-1", "CI_COMMIT_TAG": "release-1"})
    )
    assert names(rel) == ["release", "not_main", "tags_only"]


def test_rules_with_only_is_an_error() -> None:
    assert "both rules and only" in messages(
        "job:\n  script: x\n  only: [main]\n  rules:\n    - when: always\n"
    )
