"""Stages, hidden jobs, anchors, !reference, extends, default and inherit."""

from __future__ import annotations

from pipeline_testkit import errors, load, messages, names

from farm.domain.specs import DEFAULT_STAGES


def test_default_stages_and_test_stage_default() -> None:
    p = load("""
        a:
          script: echo a
        b:
          stage: build
          script: echo b
    """)
    assert p.stages == DEFAULT_STAGES
    assert p.job("a").stage == "test"
    assert p.job("b").stage == "build"
    assert p.upstream(p.job("a")) == ("b",)


def test_declared_stages_get_pre_and_post() -> None:
    p = load("""
        stages: [lint, build, .post, .pre]
        first:
          stage: .pre
          script: x
        l:
          stage: lint
          script: x
        last:
          stage: .post
          script: x
    """)
    assert p.stages == (".pre", "lint", "build", ".post")
    assert p.upstream(p.job("last")) == ("first", "l")


def test_unknown_stage_is_reported_with_line() -> None:
    (d,) = errors("""
        stages: [build]
        a:
          stage: deploy
          script: x
    """)
    assert (d.line, d.col) == (4, 3)
    assert "stage 'deploy'" in d.message and "build" in d.message


def test_hidden_jobs_do_not_run_and_anchors_merge() -> None:
    p = load("""
        .defaults: &defaults
          image: ruby:3.3
          tags: [docker]
        .nothing: 42
        job:
          <<: *defaults
          tags: [own]
          script: rake
    """)
    assert names(p) == ["job"]
    assert p.job("job").image == "ruby:3.3"
    assert p.job("job").tags == ("own",)


def test_reference_tags_and_nested_scripts() -> None:
    p = load("""
        .setup:
          script:
            - echo one
            - echo two
          variables:
            A: "1"
        job:
          variables: !reference [.setup, variables]
          script:
            - !reference [.setup, script]
            - echo three
    """)
    job = p.job("job")
    assert job.script == ("echo one", "echo two", "echo three")
    assert job.variables == {"A": "1"}


def test_reference_to_missing_key() -> None:
    (d,) = errors("""
        job:
          script: !reference [.nope, script]
    """)
    assert d.line == 3 and "'.nope' does not exist" in d.message


def test_extends_deep_merges_hashes_and_replaces_arrays() -> None:
    p = load("""
        .base:
          image: alpine
          variables: {A: a, B: b}
          script: [base]
          artifacts:
            paths: [one]
            expire_in: 1 day
        .mid:
          extends: .base
          variables: {B: mid}
          tags: [t1]
        job:
          extends: .mid
          variables: {C: c}
          script: [own]
          artifacts:
            paths: [two]
    """)
    job = p.job("job")
    assert job.image == "alpine"
    assert job.variables == {"A": "a", "B": "mid", "C": "c"}
    assert job.script == ("own",)
    assert job.tags == ("t1",)
    assert job.artifacts is not None
    assert job.artifacts.paths == ("two",)
    assert job.artifacts.expire_in == 86400


def test_extends_several_parents_last_wins() -> None:
    p = load("""
        .a:
          image: a
          variables: {X: a, Y: a}
        .b:
          image: b
          variables: {Y: b}
        job:
          extends: [.a, .b]
          script: x
    """)
    assert p.job("job").image == "b"
    assert p.job("job").variables == {"X": "a", "Y": "b"}


def test_extends_cycle_and_missing_parent() -> None:
    text = messages("""
        .a:
          extends: .b
        .b:
          extends: .a
        job:
          extends: [.a, .missing]
          script: x
    """)
    assert "extends forms a cycle" in text
    assert "job 'job' extends '.missing', which does not exist" in text


def test_extends_depth_limit() -> None:
    chain = "\n".join(f".t{i}:\n  extends: .t{i + 1}" for i in range(12))
    text = chain + "\n.t12:\n  script: x\njob:\n  extends: .t0\n"
    assert "more than 11 levels" in messages(text)


def test_default_is_not_merged_into_a_job_that_sets_the_keyword() -> None:
    p = load("""
        default:
          image: alpine
          before_script: [setup]
          cache: {paths: [.cache]}
          retry: 2
        plain:
          script: x
        own:
          image: busybox
          before_script: [mine]
          script: x
    """)
    assert p.job("plain").image == "alpine"
    assert p.job("plain").before_script == ("setup",)
    assert p.job("plain").retry.max == 2
    assert p.job("own").image == "busybox"
    assert p.job("own").before_script == ("mine",)
    assert p.job("own").cache[0].paths == (".cache",)


def test_inherit_default_and_variables() -> None:
    p = load("""
        default:
          image: alpine
          tags: [fast]
        variables:
          A: "1"
          B: "2"
        none:
          inherit: {default: false, variables: false}
          script: x
        some:
          inherit:
            default: [tags]
            variables: [B]
          script: x
    """)
    assert p.job("none").image is None and p.job("none").tags == ()
    assert p.job("none").variables == {}
    assert p.job("some").image is None and p.job("some").tags == ("fast",)
    assert p.job("some").variables == {"B": "2"}


def test_legacy_global_keywords_act_as_default() -> None:
    p = load("""
        image: node:22
        before_script: [npm ci]
        job:
          script: npm test
    """)
    assert p.job("job").image == "node:22"
    assert p.job("job").before_script == ("npm ci",)


def test_yaml_syntax_error_has_position() -> None:
    (d,) = errors("a:\n  script: [x\nb: 1\n")
    assert d.file == ".gitlab-ci.yml" and d.line >= 2 and "invalid YAML" in d.message


def test_non_mapping_document_and_empty_file() -> None:
    assert "mapping of jobs" in messages("- a\n- b\n")
    assert "empty" in messages("")
    assert "defines no jobs" in messages(".hidden:\n  script: x\n")
