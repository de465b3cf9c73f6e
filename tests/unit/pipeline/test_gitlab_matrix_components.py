"""GitLab compatibility: matrix expressions in needs:parallel:matrix, and include:component
from a local catalog (issue 13)."""

from __future__ import annotations

from gitlab_fixtures import fixture_errors, load_fixture, needed
from pipeline_testkit import errors, load

from farm.pipeline.components import Component, parse_address

PAIRS = [(p, s) for p in ("aws", "gcp") for s in ("monitoring", "app1", "app2")]


def test_matrix_expressions_map_copies_one_to_one() -> None:
    p = load_fixture("matrix_needs.gitlab-ci.yml")
    for provider, stack in PAIRS:
        test = p.job(f"linux:test: [{provider}, {stack}]")
        assert test.stage == "test"
        assert needed(test) == [f"linux:build: [{provider}, {stack}]"]
        assert test.variables["PROVIDER"] == provider and test.variables["STACK"] == stack


def test_static_selector_picks_a_subset_and_mixed_lists() -> None:
    p = load_fixture("matrix_needs.gitlab-ci.yml")
    assert needed(p.job("deploy-aws")) == [
        "linux:build: [aws, app1]",
        "linux:build: [aws, app2]",
        "linux:test: [aws, app1]",
    ]
    every_build = [f"linux:build: [{p_}, {s}]" for p_, s in PAIRS]
    # a plain name needs every copy; the expression picks this copy's counterpart
    assert needed(p.job("deploy: [aws]")) == [*every_build, "linux:test: [aws, monitoring]"]
    assert needed(p.job("deploy: [gcp]")) == [*every_build, "linux:test: [gcp, monitoring]"]


def test_selector_matching_no_copy_is_an_error() -> None:
    found = errors("""
        build:
          stage: build
          script: x
          parallel:
            matrix:
              - PROVIDER: [aws, gcp]
        deploy:
          stage: deploy
          script: x
          needs:
            - job: build
              parallel:
                matrix:
                  - PROVIDER: azure
    """)
    assert [(d.line, d.col) for d in found] == [(12, 7)]
    assert found[0].message == (
        "job 'deploy' needs 'build' with parallel:matrix {PROVIDER: azure}, which matches no "
        "copy of 'build' in this pipeline"
    )


def test_matrix_expression_errors() -> None:
    base = """
        build:
          stage: build
          script: x
          parallel:
            matrix:
              - OS: [linux, mac]
    """
    found = errors(
        base
        + """
        plain:
          stage: test
          script: x
          needs:
            - job: build
              parallel:
                matrix:
                  - OS: $[[ matrix.OS ]]
        wrong:
          stage: test
          script: x
          parallel:
            matrix:
              - ARCH: [arm64]
          needs:
            - job: build
              parallel:
                matrix:
                  - OS: $[[ matrix.OS ]]
    """
    )
    messages = [(d.line, d.message) for d in found]
    assert messages[0][0] == 13
    assert (
        "$[[ matrix.OS ]] can only be used by a parallel:matrix job; 'plain' has no matrix"
        in (messages[0][1])
    )
    assert messages[1][0] == 24
    assert (
        "'OS' is not an identifier of the parallel:matrix of 'wrong' (it has ARCH)"
        in (messages[1][1])
    )


def test_optional_selector_matching_nothing_is_fine() -> None:
    p = load("""
        build:
          script: x
          parallel: {matrix: [{OS: [linux]}]}
        test:
          stage: deploy
          script: x
          needs: [{job: build, optional: true, parallel: {matrix: [{OS: mac}]}}]
    """)
    assert needed(p.job("test")) == []


def test_components_from_the_local_catalog() -> None:
    p = load_fixture("component-user/.gitlab-ci.yml")
    assert [(j.name, j.stage) for j in p.jobs] == [
        ("lint-job", "build"),  # templates/lint.yml, with inputs and spec:component
        ("lint-v2", "test"),  # <project>@2.0 wins for version 2.0
        ("deploy-production", "deploy"),  # templates/deploy/template.yml + its local include
        ("unit", "test"),
    ]
    lint = p.job("lint-job")
    assert lint.image == "python:3.12" and lint.variables["COMPONENT_VERSION"] == "1.0"
    deploy = p.job("deploy-production")
    assert deploy.environment is not None and deploy.environment.name == "production"
    assert deploy.script == ("./deploy production",)
    off_main = load_fixture("component-user/.gitlab-ci.yml", CI_COMMIT_BRANCH="feature")
    assert "deploy-production" not in [j.name for j in off_main.jobs]  # the component's rules


def test_component_without_a_catalog_names_the_setting() -> None:
    found = fixture_errors("component-user/.gitlab-ci.yml", catalog=False)
    assert found[0].startswith(
        ".gitlab-ci.yml:2:5: include:component 'gitlab.example.com/my-org/components/lint@1.0' "
        "needs a local component catalog: set the farm setting FARM_COMPONENT_CATALOG"
    )
    assert len(found) == 3


def test_component_errors() -> None:
    found = errors(
        """
        include:
          - component: gitlab.example.com/my-org/components/missing@1.0
          - component: gitlab.example.com/lint
          - component: gitlab.example.com/my-org/components/deploy@1.0
        """,
        context=None,
        files={},
    )
    assert found  # no catalog in this context: each include is refused with its line
    assert [d.line for d in found] == [3, 4, 5]
    assert "needs a version after @" in found[1].message


def test_component_missing_from_catalog_and_bad_inputs() -> None:
    from gitlab_fixtures import GITLAB, tree

    from farm.domain.specs import PipelineContext
    from farm.errors import PipelineError
    from farm.pipeline import load_pipeline

    catalog = tree(GITLAB / "catalog")
    ctx = PipelineContext(component_catalog="/srv/catalog", read_component=catalog.get)
    text = (
        "include:\n"
        "  - component: gitlab.example.com/my-org/components/missing@1.0\n"
        "  - component: gitlab.example.com/my-org/components/deploy@1.0\n"
        "job:\n  script: x\n"
    )
    try:
        load_pipeline(text, ".gitlab-ci.yml", ctx)
    except PipelineError as exc:
        shown = [str(d) for d in exc.diagnostics]
    assert shown[0].startswith(
        ".gitlab-ci.yml:2:5: component 'gitlab.example.com/my-org/components/missing@1.0' is "
        "not in the component catalog /srv/catalog; looked for "
        "gitlab.example.com/my-org/components@1.0/templates/missing.yml"
    )
    assert shown[1] == (
        ".gitlab-ci.yml:3:5: input 'environment' of '/srv/catalog/gitlab.example.com/my-org/"
        "components/templates/deploy/template.yml' is required: no value is given and the spec "
        "has no default"
    )


def test_address_parsing() -> None:
    assert parse_address("gitlab.com/a/b/c/lint@1.2.3") == Component(
        "gitlab.com", "a/b/c", "lint", "1.2.3"
    )
    assert isinstance(parse_address("gitlab.com/../x/lint@1"), str)
    assert isinstance(parse_address("gitlab.com/a/lint@../1"), str)
