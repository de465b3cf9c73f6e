"""Whatever the input, load_pipeline either succeeds or raises PipelineError."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from farm.errors import PipelineError
from farm.pipeline import PipelineContext, lint, load_pipeline

KEYWORDS = [
    "script", "stage", "stages", "image", "services", "variables", "needs", "rules", "if",
    "when", "extends", "parallel", "matrix", "include", "local", "default", "workflow",
    "artifacts", "cache", "key", "paths", "retry", "timeout", "environment", "only", "except",
    "allow_failure", "dependencies", "inherit", "tags", "job", "build", "test", ".hidden",
    "changes", "exists", "start_in", "optional", "name", "entrypoint", "reports", "dotenv",
]  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(KEYWORDS),
    st.sampled_from(
        ["$CI", "$A == 'x'", "/re[/", "1h", "never", "manual", "a/b", "**/*.yml", "${X}"]
    ),
    st.text(max_size=12),
)
TREES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(KEYWORDS), inner, max_size=5),
    ),
    max_leaves=40,
)
DOCS = st.dictionaries(st.one_of(st.sampled_from(KEYWORDS), st.text(max_size=8)), TREES, max_size=6)
CONTEXT = PipelineContext(
    variables={"CI": "true", "CI_COMMIT_BRANCH": "main"},
    files=("ci/a.yml", "x.yml"),
    read={"ci/a.yml": "a:\n  script: x\n", "x.yml": "- not a mapping\n"}.get,
)


def check(text: str) -> None:
    try:
        load_pipeline(text, ".gitlab-ci.yml", CONTEXT)
    except PipelineError as exc:
        assert exc.diagnostics
        for d in exc.diagnostics:
            assert isinstance(d.line, int) and isinstance(d.message, str) and d.message
            assert "internal error" not in d.message, d.message
    lint(text, context=CONTEXT)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DOCS)
def test_generated_structures(doc: dict[str, Any]) -> None:
    check(yaml.safe_dump(doc, allow_unicode=True))


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=st.sampled_from(list(":-[]{}&*!<>|'\"#%@ \n\tabcxyz$/.,?0123")), max_size=80)
)
def test_yamlish_text(text: str) -> None:
    check(text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_text(text: str) -> None:
    check(text)


def test_known_nasty_inputs() -> None:
    for text in [
        "a: &a [*a]\n",
        "a: !reference [a]\n",
        "a: !reference x\n",
        "a: !!python/object:os.system x\n",
        "a: !!binary aGVsbG8=\n",
        "? [a, b]\n: c\n",
        "a: 2024-01-01\nb:\n  script: [2024-01-01]\n",
        "<<: 3\n",
        "a:\n  <<: [1, 2]\n",
        "[" * 2000 + "]" * 2000,
        "spec:\n  inputs: {}\n---\njob:\n  script: x\n",
        "a: 1\n---\nb: 2\n",
        "job:\n  script: x\n  rules:\n    - if: " + "(" * 500 + "$A" + ")" * 500 + "\n",
        "job:\n  script: x\n  variables: !reference [job, variables]\n",
        "x: &x {a: *x}\n",
        "lol: &a [1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c "
        "[*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
        "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\njob:\n  script: *d\n",
        "job:\n  script: x\n  coverage: '/(a+)+$/'\n",
        "\x00\x01",
    ]:
        check(text)
