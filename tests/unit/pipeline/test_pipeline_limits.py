"""Pipeline bombs are refused while loading, quickly, in little memory, naming the setting.

Issue 16, item 1: ~400 bytes of YAML (eight levels of anchors used as ``script: *h``)
expanded to 43 million script lines and took the API to 19 GB. Every way a pipeline can
multiply itself (anchors, ``$VAR`` references, ``parallel``/``matrix``, ``extends``,
``!reference``, ``include``, ``needs`` on parallel jobs) is bounded by a
:class:`PipelineLimits` value and counted as it happens.
"""

from __future__ import annotations

import json
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from pipeline_testkit import FIXTURES, ctx

from farm.cli.lint import lint
from farm.domain.specs import JobSpec, Need, Pipeline, PipelineContext, PipelineLimits
from farm.errors import PipelineError
from farm.pipeline import load_pipeline
from farm.pipeline.limits import Budget, check_stored_size
from farm.settings import get_settings

# Time is measured by bench/ (a timed assert fails on a loaded machine, not on a bug);
# memory is bounded here: a bomb must be refused before it grows.
MAX_PEAK = 50 * 2**20  # tracemalloc peak while refusing


def lol(levels: int, width: int = 9, use: str = "job:\n  script: *L{last}\n") -> str:
    """The billion laughs: each anchor repeats the previous one ``width`` times."""
    lines = [".bomb:", f"  l0: &L0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels):
        lines.append(f"  l{i}: &L{i} [{', '.join([f'*L{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n" + use.format(last=levels - 1)


BOMB = lol(8)  # the issue's file: 9**8 = 43,046,721 script lines


@dataclass
class Refusal:
    message: str
    line: int
    seconds: float
    peak: int


def refuse(
    text: str,
    limits: PipelineLimits | None = None,
    files: dict[str, str] | None = None,
    variables: dict[str, str] | None = None,
) -> Refusal:
    """Load ``text``; it must be refused within the time and memory bounds, by one problem."""
    base = ctx(variables, files)
    context = PipelineContext(
        variables=base.variables,
        files=base.files,
        read=base.read,
        limits=limits if limits is not None else PipelineLimits(),
    )
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(PipelineError) as info:
            load_pipeline(text, ".gitlab-ci.yml", context)
    finally:
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    (diag,) = info.value.diagnostics
    assert peak < MAX_PEAK, f"peak {peak / 2**20:.1f} MiB: {diag}"
    return Refusal(str(diag), diag.line, seconds, peak)


# --- anchors: counted by the YAML builder as it follows them -------------------------


def test_the_issues_billion_laughs_is_refused_at_once() -> None:
    assert len(BOMB) < 500
    r = refuse(BOMB)
    assert r.message.startswith(".gitlab-ci.yml:")
    assert "follows more than 20,000 YAML aliases (FARM_PIPELINE_MAX_ALIASES)" in r.message
    assert 3 <= r.line <= 9  # at the alias that went over, in the anchors
    # was 11 s and 0.7 GB in the loader alone (then 19 GB in the API storing it)
    assert r.peak < 5 * 2**20  # its time: bench/ (docs/BENCHMARKS.md)


@pytest.mark.parametrize(
    "use",
    [
        "job:\n  script: [echo, *L{last}]\n",
        "job:\n  script: x\n  variables:\n    HUGE: *L{last}\n",
        "job:\n  script: x\n  parallel:\n    matrix:\n      - A: *L{last}\n",
        "job:\n  script: x\n  tags: *L{last}\n",
        "include: *L{last}\njob:\n  script: x\n",
        "variables: {{A: *L{last}}}\njob:\n  script: x\n",
        "job:\n  script: x\n  rules:\n    - changes: *L{last}\n",
    ],
    ids=["script-list", "variables", "matrix", "tags", "include", "global-variables", "rules"],
)
def test_anchor_bombs_anywhere_are_refused(use: str) -> None:
    r = refuse(lol(8, use=use))
    assert "(FARM_PIPELINE_MAX_ALIASES)" in r.message


def test_mapping_bombs_and_merge_keys_are_refused() -> None:
    keys = ", ".join(f"k{i}: *M{{p}}" for i in range(9))
    lines = [".m:", "  m0: &M0 {" + ", ".join(f"k{i}: x" for i in range(9)) + "}"]
    lines += [f"  m{i}: &M{i} {{{keys.format(p=i - 1)}}}" for i in range(1, 8)]
    r = refuse("\n".join(lines) + "\njob:\n  script: x\n  variables: *M7\n")
    assert "(FARM_PIPELINE_MAX_NODES)" in r.message  # keys count: nodes go over first
    merges = [".d: &D0 {" + ", ".join(f"k{i}: x" for i in range(50)) + "}"]
    merges += [f"j{n}: {{<<: [*D0, *D0, *D0, *D0], script: x}}" for n in range(2000)]
    r = refuse("\n".join(merges) + "\n", PipelineLimits(max_nodes=10_000))
    assert "more than 10,000 YAML nodes once aliases are followed" in r.message
    assert "(FARM_PIPELINE_MAX_NODES)" in r.message


def test_wide_anchors_are_refused_by_nodes() -> None:
    # few aliases, each standing for much: the node count once followed is what grows
    big = "[" + ", ".join(f"v{i}" for i in range(5_000)) + "]"
    text = f".a: &A {big}\n" + "".join(f"j{n}:\n  script: x\n  tags: *A\n" for n in range(50))
    r = refuse(text)
    assert "more than 200,000 YAML nodes once aliases are followed" in r.message
    assert "(FARM_PIPELINE_MAX_NODES)" in r.message


def test_recursive_and_undefined_aliases_stay_plain_errors() -> None:
    for text, fragment in [
        ("a: &a [*a]\n", "recursive alias"),
        ("a: *nope\n", "alias *nope has no anchor"),
        ("a: &x 1\nb: &x 2\n", "anchor &x is defined twice"),
    ]:
        with pytest.raises(PipelineError) as info:
            load_pipeline(text)
        assert fragment in str(info.value)


# --- script lines, jobs, parallel, matrix ----------------------------------------------


def test_script_lines_multiplied_by_reference_are_refused() -> None:
    lines = "\n".join(f"    - echo {i}" for i in range(1_000))
    jobs = "".join(f"j{n}:\n  script:\n    - !reference [.lines, script]\n" for n in range(101))
    r = refuse(f".lines:\n  script:\n{lines}\n{jobs}")
    assert "expands to more than 100,000 script lines (FARM_PIPELINE_MAX_SCRIPT_LINES)" in (
        r.message
    )


def test_nested_script_lists_count_lines_while_flattening() -> None:
    # anchors inside a script nest lists: each line is counted as it is flattened
    r = refuse(
        lol(6, use="job:\n  script: [*L{last}, *L{last}]\n"),
        PipelineLimits(max_aliases=10**9, max_nodes=10**9),
    )
    assert "(FARM_PIPELINE_MAX_SCRIPT_LINES)" in r.message


def test_a_huge_matrix_is_counted_before_it_is_made() -> None:
    values = "[" + ", ".join(str(i) for i in range(10)) + "]"
    row = ", ".join(f"K{k}: {values}" for k in range(10))  # 10**10 combinations
    r = refuse(f"job:\n  script: x\n  parallel:\n    matrix:\n      - {{{row}}}\n")
    assert "makes 10,000,000,000 jobs; at most 200" in r.message


def test_too_many_jobs_are_refused() -> None:
    text = "".join(f"j{n}:\n  script: x\n  parallel: 200\n" for n in range(11))
    r = refuse(text)
    assert "expands to more than 2,000 jobs (FARM_PIPELINE_MAX_JOBS)" in r.message
    assert r.line == 32  # the job that went over
    loaded = load_pipeline(text, context=PipelineContext(limits=PipelineLimits(max_jobs=2_200)))
    assert len(loaded.jobs) == 2_200


def test_copies_that_rules_drop_are_bounded_too() -> None:
    text = "".join(
        f"j{n}:\n  script: x\n  parallel: 200\n  rules: [{{if: $NEVER}}]\n" for n in range(101)
    )
    r = refuse(text)
    assert "more than 20,000 jobs (parallel copies included) before rules" in r.message
    assert "(FARM_PIPELINE_MAX_JOBS)" in r.message


# --- extends, default, !reference, include -----------------------------------------------


def test_deep_extends_chains_are_refused_quickly() -> None:
    chain = "".join(
        f".t{i}:\n  extends: .t{i - 1}\n  variables: {{V{i}: x}}\n" for i in range(1, 3000)
    )
    text = f".t0:\n  script: x\n{chain}job:\n  extends: .t2999\n"
    with pytest.raises(PipelineError) as info:
        load_pipeline(text)
    assert "extends nests more than 11 levels" in str(info.value)


def test_wide_extends_merges_are_refused() -> None:
    variables = ", ".join(f"V{i}: x" for i in range(1_000))
    jobs = "".join(f"j{n}:\n  extends: .t\n  variables: {{A: b}}\n" for n in range(30))
    r = refuse(
        f".t:\n  script: x\n  variables: {{{variables}}}\n{jobs}", PipelineLimits(max_nodes=10_000)
    )
    assert "merges copy more than 20,000 keys" in r.message
    assert "(FARM_PIPELINE_MAX_NODES)" in r.message


def test_many_includes_are_refused() -> None:
    files = {f"ci/part{i:03}.yml": f"job{i}:\n  script: x\n" for i in range(200)}
    r = refuse("include: 'ci/*.yml'\n", files=files)
    assert "includes more than 150 files (FARM_PIPELINE_MAX_INCLUDES)" in r.message
    ok = {f"ci/part{i:03}.yml": f"job{i}:\n  script: x\n" for i in range(150)}
    assert len(load_pipeline("include: 'ci/*.yml'\n", context=ctx(None, ok)).jobs) == 150


def test_includes_share_one_budget() -> None:
    # each file alone is fine; together they follow too many aliases
    part = lol(4, use="")  # 9 + 81 + 729 = 819 aliases each
    files = {f"ci/p{i:02}.yml": part.replace(".bomb", f".bomb{i}") for i in range(30)}
    r = refuse("include: 'ci/*.yml'\njob:\n  script: x\n", files=files)
    assert r.message.startswith("ci/p")
    assert "(FARM_PIPELINE_MAX_ALIASES)" in r.message


# --- bytes: variables, job specs, the whole pipeline -------------------------------------


def test_variable_expansion_bombs_are_refused() -> None:
    # each variable repeats the previous one ten times: A8 would be 10**9 characters
    chain = "\n".join(f"  A{i}: {f'$A{i - 1}' * 10}" for i in range(1, 9))
    text = f"variables:\n  A0: xxxxxxxxxx\n{chain}\njob:\n  script: [echo $A8]\n"
    r = refuse(text)
    assert r.message.startswith(".gitlab-ci.yml:12:")
    assert "job 'job': a value expands to more than 1 MiB once its $VARIABLES are" in r.message
    assert "(FARM_PIPELINE_MAX_JOB_BYTES)" in r.message
    r = refuse(
        "variables:\n  A: " + "x" * 100_000 + "\njob:\n  script: x\n  image: " + "$A" * 100 + "\n"
    )
    assert "(FARM_PIPELINE_MAX_JOB_BYTES)" in r.message


def test_a_job_spec_over_its_byte_limit_is_refused() -> None:
    r = refuse("job:\n  script:\n    - " + "x" * (1024**2 + 10) + "\n")
    assert "job 'job' expands to more than 1 MiB of job spec" in r.message
    assert "(FARM_PIPELINE_MAX_JOB_BYTES)" in r.message


def test_the_whole_pipelines_specs_are_bounded() -> None:
    line = "x" * (900 * 1024)
    jobs = "".join(f"j{n}:\n  script: [*big]\n" for n in range(20))
    r = refuse(f".big:\n  line: &big {line}\n{jobs}")
    assert "the pipeline's jobs expand to more than 16 MiB of job specs" in r.message
    assert "(FARM_PIPELINE_MAX_BYTES)" in r.message


def test_needs_on_parallel_jobs_count_as_stored() -> None:
    # needing a parallel job means needing every copy: 200 x 200 needs stored
    text = (
        "a:\n  stage: build\n  script: x\n  parallel: 200\n"
        "b:\n  script: x\n  parallel: 200\n  needs: [a]\n"
    )
    assert len(load_pipeline(text).jobs) == 400
    r = refuse(text, PipelineLimits(max_bytes=1024**2))
    assert "more than 1 MiB of job specs (FARM_PIPELINE_MAX_BYTES)" in r.message


def test_yaml_text_is_bounded() -> None:
    r = refuse("job:\n  script: x\n# " + "y" * 5000 + "\n", PipelineLimits(max_bytes=4096))
    assert "YAML files hold more than 4 KiB (FARM_PIPELINE_MAX_BYTES)" in r.message


def test_sizes_are_exactly_what_is_stored() -> None:
    texts = [p.read_text() for p in sorted(FIXTURES.glob("*.gitlab-ci.yml"))]
    assert len(texts) == 4
    texts.append(
        "a:\n  script: [é, '\\x01']\n  parallel:\n    matrix:\n      - A: [1, 2]\n"
        "b:\n  needs: [a]\n  script: x\n  variables: {N: 1.5}\n"
    )
    texts.append("""
full:
  image: {name: "tool:1", entrypoint: [""]}
  services: [pg, {name: redis, alias: "c,kv", command: [r, "--x"], variables: {A: "1"}}]
  script: [echo "quoted\\tand\\\\slashes"]
  retry: {max: 2, when: [script_failure], exit_codes: [137]}
  allow_failure: {exit_codes: [42]}
  when: delayed
  start_in: 5 minutes
  timeout: 1h
  tags: [docker]
  resource_group: deploy
  environment: {name: review/x, url: "https://x", deployment_tier: development}
  coverage: '/Coverage: (\\d+)%/'
  artifacts: {name: r, paths: [dist/], exclude: [x], when: always, expire_in: 1 week,
              reports: {dotenv: b.env}}
  cache: [{key: {files: [a.lock], prefix: py}, paths: [.venv], fallback_keys: [m]}]
""")
    for text in texts:
        main = {"CI_COMMIT_BRANCH": "main", "CI_DEFAULT_BRANCH": "main"}
        pipeline = load_pipeline(text, context=ctx(main, {"Dockerfile": "FROM x"}))
        budget = Budget()
        for job in pipeline.jobs:
            assert budget.size(job) == len(json.dumps(job.to_dict())), job.name


def test_stored_size_check_before_storing() -> None:
    job = JobSpec(name="j", stage="test", script=("x" * 2000,), line=7)
    many = Pipeline(
        stages=("test",),
        jobs=tuple(
            JobSpec(name=f"j{i}", stage="test", script=("x" * 600,), needs=(Need("j"),))
            for i in range(3)
        ),
    )
    check_stored_size(Pipeline(stages=("test",), jobs=(job,)), PipelineLimits(), "ci.yml")
    with pytest.raises(PipelineError) as info:
        check_stored_size(
            Pipeline(stages=("test",), jobs=(job,)), PipelineLimits(max_job_bytes=1024), "ci.yml"
        )
    assert str(info.value).startswith("ci.yml:7:1: job 'j' expands to more than 1 KiB")
    with pytest.raises(PipelineError) as info:
        check_stored_size(many, PipelineLimits(max_bytes=2048), "ci.yml")
    assert "more than 2 KiB of job specs (FARM_PIPELINE_MAX_BYTES)" in str(info.value)


def test_real_pipelines_are_far_below_the_defaults() -> None:
    root = FIXTURES / "monorepo"
    files = {p.relative_to(root).as_posix(): p.read_text() for p in root.rglob("*") if p.is_file()}
    main = {"CI_COMMIT_BRANCH": "main", "CI_DEFAULT_BRANCH": "main"}
    tight = PipelineLimits(
        max_aliases=100, max_nodes=1_000, max_script_lines=100, max_jobs=50,
        max_job_bytes=8 * 1024, max_bytes=64 * 1024, max_includes=10,
    )  # fmt: skip
    context = ctx(main, files)
    pipeline = load_pipeline(
        files[".gitlab-ci.yml"],
        context=PipelineContext(context.variables, context.files, context.read, None, tight),
    )
    assert len(pipeline.jobs) > 10


# --- farm lint reports the same ------------------------------------------------------------


@pytest.fixture
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_lint_reports_the_limit_and_its_setting(
    tmp_path: Path, fresh_settings: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".gitlab-ci.yml").write_text(BOMB)
    result = CliRunner().invoke(lint, [str(tmp_path / ".gitlab-ci.yml")])
    assert result.exit_code == 1
    assert "(FARM_PIPELINE_MAX_ALIASES)" in result.output
    many = "".join(f"j{n}:\n  script: x\n  parallel: 200\n" for n in range(11))
    (tmp_path / ".gitlab-ci.yml").write_text(many)
    result = CliRunner().invoke(lint, [str(tmp_path / ".gitlab-ci.yml")])
    assert result.exit_code == 1 and "(FARM_PIPELINE_MAX_JOBS)" in result.output
    fresh_settings.setenv("FARM_PIPELINE_MAX_JOBS", "3000")
    get_settings.cache_clear()
    result = CliRunner().invoke(lint, [str(tmp_path / ".gitlab-ci.yml")])
    assert result.exit_code == 0, result.output
    assert "OK: 2200 jobs" in result.output


def test_repeated_mistakes_are_listed_up_to_a_thousand() -> None:
    # problems are output too: 1,500 jobs with one mistake each list 1,000 and count the rest
    text = "".join(f"j{n}:\n  script: x\n  bogus: 1\n" for n in range(1_500))
    with pytest.raises(PipelineError) as info:
        load_pipeline(text)
    diags = info.value.diagnostics
    assert len(diags) == 1_001
    assert diags[-1].message.startswith("500 more problems are not listed")
    bad = "\n".join(f"    - {i}: x" for i in range(1_000))  # mappings, not lines
    jobs = "".join(f"j{n}:\n  script: [!reference [.bad, script]]\n" for n in range(101))
    r = refuse(f".bad:\n  script:\n{bad}\n{jobs}")
    assert "(FARM_PIPELINE_MAX_SCRIPT_LINES)" in r.message


def test_the_byte_limit_is_exact() -> None:
    # the loader sizes jobs before needs are linked, then adds what needs add: the total
    # it refuses at is exactly the JSON the coordinator stores
    root = FIXTURES / "monorepo"
    files = {p.relative_to(root).as_posix(): p.read_text() for p in root.rglob("*") if p.is_file()}
    main = {"CI_COMMIT_BRANCH": "main", "CI_DEFAULT_BRANCH": "main", "CI_COMMIT_REF_SLUG": "x"}
    base = ctx(main, files)

    def load(limits: PipelineLimits) -> Pipeline:
        context = PipelineContext(base.variables, base.files, base.read, None, limits)
        return load_pipeline(files[".gitlab-ci.yml"], ".gitlab-ci.yml", context)

    pipeline = load(PipelineLimits())
    assert any(job.needs for job in pipeline.jobs)
    sizes = [len(json.dumps(job.to_dict())) for job in pipeline.jobs]
    assert len(load(PipelineLimits(max_bytes=sum(sizes), max_job_bytes=max(sizes))).jobs) > 10
    with pytest.raises(PipelineError, match=r"\(FARM_PIPELINE_MAX_BYTES\)"):
        load(PipelineLimits(max_bytes=sum(sizes) - 1))
    with pytest.raises(PipelineError, match=r"\(FARM_PIPELINE_MAX_JOB_BYTES\)"):
        load(PipelineLimits(max_job_bytes=max(sizes) - 1))
