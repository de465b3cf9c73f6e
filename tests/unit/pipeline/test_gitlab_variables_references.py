"""GitLab compatibility: variable forms, rules:variables/needs/allow_failure, include:rules,
and ``!reference`` tags inside lists (issue 13)."""

from __future__ import annotations

from gitlab_fixtures import fixture_errors, load_fixture, needed
from pipeline_testkit import errors, load, names


def test_variable_forms_and_rules_keywords() -> None:
    p = load_fixture("variables_forms.gitlab-ci.yml")
    # include:local built from $CI_PROJECT_NAME, kept by its rules; ci/never.yml is not
    assert names(p) == ["lint", "build", "test"]
    assert [j.stage for j in p.jobs] == [".pre", "build", "test"]
    build = p.job("build")
    assert build.variables["EMPTY"] == ""  # null is an empty string
    assert build.variables["UNSET"] == ""
    assert build.variables["DEPLOY_ENVIRONMENT"] == "staging"  # {value, options, description}
    assert build.variables["RAW"] == "$EMPTY-literal"  # expand: false
    assert build.variables["NUMBER"] == "42"
    test = p.job("test")
    assert test.variables["DEPLOY_ENVIRONMENT"] == "production"  # rules:variables
    assert needed(test) == ["build"]  # rules:needs
    assert test.allow_failure and test.when == "on_success"  # rules:allow_failure


def test_include_rules_false_and_other_branch() -> None:
    p = load_fixture("variables_forms.gitlab-ci.yml", CI_COMMIT_BRANCH="feature")
    assert names(p) == ["build", "test"]
    test = p.job("test")
    assert test.needs is None and not test.allow_failure
    assert test.variables["DEPLOY_ENVIRONMENT"] == "staging"


def test_variable_option_not_listed_and_boolean_value() -> None:
    found = [
        (d.line, d.message)
        for d in errors("""
            variables:
              TARGET:
                value: qa
                options: [staging, production]
              FLAG: true
            job:
              script: x
        """)
    ]
    assert found[0][0] == 4 and "must be one of its options: staging, production" in found[0][1]
    assert found[1][0] == 6 and "not true; quote it" in found[1][1]


def test_references_inside_lists_are_flattened() -> None:
    p = load_fixture("reference_lists.gitlab-ci.yml")
    job = p.job("nested-references")
    # nested references flatten, and [.snippets, one, 0] reaches into a list item
    assert job.script == ('echo "ONE!"', 'echo "TWO!"', 'echo "THREE!"', 'echo "ONE!"')
    assert job.when == "manual" and not job.allow_failure  # rules from the reference
    assert needed(job) == ["prepare", "lint"]
    assert [s.name for s in job.services] == ["postgres:15", "redis:7"]
    assert job.services[1].alias == ("cache",)
    assert job.tags == ("linux", "docker")
    assert job.stage == "test"


def test_reference_rules_then_own_rule_on_a_tag() -> None:
    p = load_fixture("reference_lists.gitlab-ci.yml", CI_COMMIT_BRANCH="", CI_COMMIT_TAG="v1")
    assert p.job("nested-references").when == "on_success"


def test_reference_nesting_past_gitlabs_limit_is_refused() -> None:
    chain = ["  l0: [x]"] + [f"  l{i}:\n    - !reference [.s, l{i - 1}]" for i in range(1, 13)]
    text = (
        ".s:\n" + "\n".join(chain) + "\njob:\n  script: x\n  needs:\n    - !reference [.s, l12]\n"
    )
    found = errors(text)
    assert any("needs nests lists more than 10 levels deep" in d.message for d in found)
    assert found[0].file == ".gitlab-ci.yml" and found[0].line > 1


def test_missing_reference_is_located() -> None:
    found = errors("job:\n  script: x\n  needs:\n    - !reference [.nope, needs]\n")
    assert (found[0].line, found[0].col) == (4, 7)
    assert "'.nope' does not exist" in found[0].message


def test_refused_keywords_keep_their_lines() -> None:
    found = fixture_errors("refused.gitlab-ci.yml")
    assert found == [
        "refused.gitlab-ci.yml:3:5: include:template is not available offline; copy GitLab's "
        "template into the repository and use include:local",
        "refused.gitlab-ci.yml:4:5: include:remote is not available offline; copy the file "
        "into the repository and use include:local",
        "refused.gitlab-ci.yml:5:5: include:project of another project is not available "
        "offline; copy the file into the repository and use include:local",
        "refused.gitlab-ci.yml:11:5: cache:key 'feature/branch' cannot contain '/' or be '.' "
        "or '..'",
        "refused.gitlab-ci.yml:15:3: trigger is not supported by farm (job 'downstream'): "
        "downstream and child pipelines cannot be started by farm",
        "refused.gitlab-ci.yml:21:7: needs:project is not supported by farm (only jobs of "
        "this pipeline can be needed)",
        "refused.gitlab-ci.yml:25:7: needs:pipeline is not supported by farm (only jobs of "
        "this pipeline can be needed)",
    ]


def test_include_project_of_this_project_is_local() -> None:
    p = load(
        """
        include:
          - project: $CI_PROJECT_PATH
            file: [/ci/a.yml]
        job:
          script: x
        """,
        variables={"CI_PROJECT_PATH": "group/shop"},
        files={"ci/a.yml": "lint:\n  script: y\n"},
    )
    assert names(p) == ["lint", "job"]


def test_reference_list_bomb_is_bounded() -> None:
    import pytest

    from farm.domain.specs import PipelineLimits
    from farm.errors import PipelineError
    from farm.pipeline import PipelineContext, load_pipeline

    items = "\n".join(f"    - j{i}" for i in range(1000))
    refs = "\n".join("    - !reference [.a, needs]" for _ in range(200))
    jobs = "\n".join(f"j{i}:\n  needs:\n{refs}\n  script: x" for i in range(10))
    text = f".a:\n  needs:\n{items}\n{jobs}\n"
    with pytest.raises(PipelineError) as info:
        load_pipeline(text, ".gitlab-ci.yml", PipelineContext(limits=PipelineLimits()))
    message = info.value.diagnostics[0].message
    assert "!reference lists flatten to more than 400,000 items" in message
    assert "FARM_PIPELINE_MAX_NODES" in message
