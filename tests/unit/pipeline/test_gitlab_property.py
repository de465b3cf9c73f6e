"""Whatever inputs headers, interpolation blocks and !reference lists say, the loader
either succeeds or raises PipelineError (never crashes, never an internal error)."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from farm.errors import PipelineError
from farm.pipeline import PipelineContext, load_pipeline

NAMES = st.sampled_from(["a", "b", "stage", "x-y", "bad name", ""])
FUNCS = st.sampled_from(
    ["", " | expand_vars", " | truncate(0,2)", " | posix_escape", " | truncate(a)", " | nope",
     " | posix_escape | posix_escape | posix_escape | posix_escape"]
)  # fmt: skip
SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 300), st.text(max_size=6),
    st.lists(st.text(max_size=3), max_size=3),
)  # fmt: skip
BLOCK = st.builds(
    lambda scope, name, f: f"$[[ {scope}.{name}{f} ]]",
    st.sampled_from(["inputs", "matrix", "component", "other"]),
    NAMES,
    FUNCS,
)
VALUE = st.one_of(
    BLOCK, st.builds(lambda a, b: f"pre {a} mid {b}", BLOCK, BLOCK), st.text(max_size=8)
)
INPUT = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["string", "number", "boolean", "array", "list", 3]),
        "default": SCALAR,
        "options": st.one_of(st.lists(SCALAR, max_size=3), SCALAR),
        "regex": st.sampled_from(["^a", "(", "/x+/", ""]),
        "description": SCALAR,
    },
)
HEADER = st.dictionaries(NAMES, st.one_of(st.none(), INPUT), max_size=3)
KEYS = st.sampled_from(["script", "stage", "needs", "rules", "services", "tags", "variables"])
REF = st.builds(
    lambda path: "!reference " + json.dumps(path),
    st.lists(
        st.sampled_from([".t", "job", "script", "needs", "rules", "0", "a"]), min_size=1, max_size=3
    ),
)
ITEM = st.one_of(REF, VALUE.map(json.dumps), st.just("[" + "[" * 12 + "x" + "]" * 13))


def render(header: dict, template: list[tuple[str, list[str]]], job: list[tuple[str, str]]) -> str:  # type: ignore[type-arg]
    lines = []
    if header is not None:
        lines += ["spec:", "  inputs: " + json.dumps(header), "---"]
    lines.append(".t:")
    for key, items in template:
        lines.append(f"  {key}:")
        lines += [f"    - {i}" for i in items] or ["    []"]
    lines.append("job:")
    for key, value in job:
        lines.append(f"  {key}: {value}")
    lines.append("  parallel: {matrix: [{a: [x, y]}]}")
    return "\n".join(lines) + "\n"


CONTEXT = PipelineContext(variables={"CI_COMMIT_BRANCH": "main"})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(st.none(), HEADER),
    st.lists(st.tuples(KEYS, st.lists(ITEM, max_size=4)), max_size=4),
    st.lists(st.tuples(KEYS, st.one_of(REF, VALUE.map(json.dumps))), max_size=4),
)
def test_inputs_and_reference_lists_never_crash(header, template, job) -> None:  # type: ignore[no-untyped-def]
    text = render(header, template, job)
    try:
        load_pipeline(text, ".gitlab-ci.yml", CONTEXT)
    except PipelineError as exc:
        assert exc.diagnostics
        for d in exc.diagnostics:
            assert "internal error" not in d.message, (d.message, text)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(NAMES, st.text(max_size=10)), max_size=4), st.text(max_size=40))
def test_include_inputs_never_crash(given_inputs, body) -> None:  # type: ignore[no-untyped-def]
    included = "spec:\n  inputs:\n    a:\n    b: {type: number, default: 1}\n---\n" + body
    files = {"t.yml": included}
    ctx = PipelineContext(files=("t.yml",), read=files.get)
    inputs = {k: v for k, v in given_inputs}
    text = "include:\n  - local: t.yml\n    inputs: " + json.dumps(inputs) + "\njob:\n  script: x\n"
    try:
        load_pipeline(text, ".gitlab-ci.yml", ctx)
    except PipelineError as exc:
        for d in exc.diagnostics:
            assert "internal error" not in d.message, (d.message, text)
