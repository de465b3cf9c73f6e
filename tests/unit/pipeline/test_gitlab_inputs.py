"""GitLab compatibility: CI/CD inputs (spec:inputs headers, $[[ inputs.NAME ]], functions,
include:inputs and their errors) (issue 13)."""

from __future__ import annotations

import pytest
from gitlab_fixtures import fixture_errors, load_fixture
from pipeline_testkit import errors, load, names

from farm.domain.specs import PipelineLimits
from farm.errors import PipelineError
from farm.pipeline import PipelineContext, load_pipeline
from farm.pipeline.inputs import posix_escape


def test_include_inputs_typed_and_interpolated() -> None:
    p = load_fixture("inputs/.gitlab-ci.yml")
    # the same file twice with other inputs makes other jobs; parallel keeps its number type
    assert [(j.name, j.stage) for j in p.jobs] == [
        ("scan-staging 1/2", "test"),
        ("scan-staging 2/2", "test"),
        ("scan-production 1/1", "deploy"),
    ]
    staging = p.job("scan-staging 1/2")
    assert staging.interruptible is True  # a whole-value block keeps the boolean type
    assert staging.script == ("./scan-website staging --tag v1.2.3",)
    assert staging.variables["DRY_RUN"] == "dry-run=true"
    assert staging.variables["TARGETS"] == 'targets: ["web", "api"]'
    assert staging.variables["SHORT"] == "stag"  # truncate(0,4)
    assert staging.variables["QUOTED"] == "v1.2.3"  # posix_escape
    assert staging.variables["BRANCH"] == "staging-main"
    production = p.job("scan-production 1/1")
    assert production.variables["DRY_RUN"] == "dry-run=false"  # defaults
    assert production.variables["TARGETS"] == 'targets: ["web"]'
    assert not production.interruptible


def test_include_input_errors_point_at_the_include() -> None:
    assert fixture_errors("inputs-errors/.gitlab-ci.yml") == [
        ".gitlab-ci.yml:2:5: input 'environment' of 'templates/scan.yml' is required: no value "
        "is given and the spec has no default",
        ".gitlab-ci.yml:4:7: input 'job-stage' of 'templates/scan.yml': provided value 'build' "
        "cannot be used because it is not in the list of allowed options (test, deploy)",
        ".gitlab-ci.yml:5:7: input 'parallel-runs' of 'templates/scan.yml': provided value is "
        "not a number",
        ".gitlab-ci.yml:6:7: input 'tag' of 'templates/scan.yml': provided value 'latest' does "
        "not match the required regex ^v\\d+\\.\\d+\\.\\d+$",
        ".gitlab-ci.yml:7:7: unknown input for 'templates/scan.yml': colour",
        ".gitlab-ci.yml:8:5: inputs are given, but 'templates/plain.yml' has no spec:inputs "
        "header declaring them",
    ]


def test_pipeline_inputs_use_their_defaults() -> None:
    p = load_fixture("pipeline-inputs/.gitlab-ci.yml")
    assert names(p) == ["test", "deploy"]
    deploy = p.job("deploy")
    assert deploy.script == ("./deploy staging",)
    assert deploy.environment is not None and deploy.environment.name == "staging"


def test_required_pipeline_input_and_unknown_key() -> None:
    found = errors(
        "spec:\n  inputs:\n    region:\n---\njob:\n  script: echo $[[ inputs.region ]]\n"
    )
    assert str(found[0]) == (
        ".gitlab-ci.yml:3:5: pipeline input 'region' is required, but farm starts pipelines "
        "with default values only: give it a default"
    )
    found = errors("spec:\n  inputs:\n    a: {default: x}\n---\njob:\n  script: $[[ inputs.b ]]\n")
    assert (found[0].line, found[0].col) == (6, 3)
    assert "unknown interpolation key: inputs.b" in found[0].message


def test_bad_header_declarations() -> None:
    found = errors("""\
        spec:
          inputs:
            a: {type: list}
            b: {type: number, default: "x"}
            c: {regex: "("}
          extra: 1
        ---
        job:
          script: x
        """)
    shown = [(d.line, d.message) for d in found if "required" not in d.message]
    assert [d.line for d in found if "required" in d.message] == [3, 5]
    assert shown[0][0] == 3 and "type must be one of string, number, boolean, array" in shown[0][1]
    assert shown[1] == (4, "input b: default value is not a number")
    assert shown[2][0] == 5 and "not a valid regular expression" in shown[2][1]
    assert shown[3][0] == 6 and "unknown key 'extra' in spec" in shown[3][1]


def test_functions() -> None:
    assert posix_escape("a b'c$") == "a\\ b\\'c\\$"
    assert posix_escape("") == "''"
    p = load(
        """\
        spec:
          inputs:
            msg: {default: "it's $CI_COMMIT_BRANCH"}
        ---
        job:
          script:
            - echo $[[ inputs.msg | expand_vars | posix_escape ]]
            - echo $[[ inputs.msg | truncate(5,3) ]]
        """,
        variables={"CI_COMMIT_BRANCH": "main"},
    )
    assert p.job("job").script == ("echo it\\'s\\ main", "echo $CI")
    found = errors(
        "spec:\n  inputs:\n    a: {default: x}\n---\njob:\n  script:\n"
        "    - $[[ inputs.a | upcase ]]\n    - $[[ inputs.a | truncate(1) ]]\n"
        "    - $[[ inputs.a | posix_escape | posix_escape | posix_escape | posix_escape ]]\n"
    )
    assert [d.line for d in found] == [7, 8, 9]
    assert "no function matching 'upcase'" in found[0].message
    assert "too many functions" in found[2].message


def test_files_without_header_are_not_interpolated() -> None:
    p = load("job:\n  script: echo '$[[ inputs.x ]]'\n")
    assert p.job("job").script == ("echo '$[[ inputs.x ]]'",)


def test_header_in_the_same_document_and_third_document() -> None:
    found = errors("spec:\n  inputs: {}\njob:\n  script: x\n")
    assert "spec: belongs in a header document of its own" in found[0].message
    found = errors("spec: {}\n---\njob:\n  script: x\n---\nother: 1\n")
    assert found[0].line == 6


def test_interpolation_is_bounded_by_the_limits() -> None:
    big = "x" * 4000
    text = "spec:\n  inputs:\n    a: {default: " + big + "}\n---\n"
    text += "".join(f"j{i}:\n  script: $[[ inputs.a ]]$[[ inputs.a ]]\n" for i in range(300))
    limits = PipelineLimits(max_bytes=1024 * 1024, max_job_bytes=1024 * 64)
    with pytest.raises(PipelineError) as info:
        load_pipeline(text, ".gitlab-ci.yml", PipelineContext(limits=limits))
    assert "interpolation writes more than 1 MiB" in info.value.diagnostics[0].message
    assert "FARM_PIPELINE_MAX_BYTES" in info.value.diagnostics[0].message


def test_array_input_bomb_counts_nodes() -> None:
    items = ", ".join(["a"] * 500)
    text = f"spec:\n  inputs:\n    a: {{type: array, default: [{items}]}}\n---\n"
    text += "".join(f"j{i}:\n  script: $[[ inputs.a ]]\n" for i in range(400))
    with pytest.raises(PipelineError) as info:
        load_pipeline(
            text, ".gitlab-ci.yml", PipelineContext(limits=PipelineLimits(max_nodes=50_000))
        )
    assert "FARM_PIPELINE_MAX_NODES" in info.value.diagnostics[0].message
