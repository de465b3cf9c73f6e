"""parallel / matrix expansion, needs resolution, dependencies and cycles."""

from __future__ import annotations

from pipeline_testkit import errors, load, messages, names, needs


def test_parallel_n() -> None:
    p = load("""
        build:
          stage: build
          script: x
        test:
          parallel: 3
          script: pytest --shard $CI_NODE_INDEX/$CI_NODE_TOTAL
        report:
          stage: deploy
          needs: [test]
          script: x
    """)
    assert names(p) == ["build", "test 1/3", "test 2/3", "test 3/3", "report"]
    job = p.job("test 2/3")
    assert (job.node_index, job.node_total) == (2, 3)
    assert job.variables["CI_NODE_INDEX"] == "2" and job.variables["CI_NODE_TOTAL"] == "3"
    assert needs(p, "report") == ["test 1/3", "test 2/3", "test 3/3"]


def test_matrix_names_values_and_variables() -> None:
    p = load("""
        test:
          image: python:$PY
          parallel:
            matrix:
              - PY: ["3.11", "3.12"]
                OS: linux
              - PY: "3.13"
                OS: [linux, windows]
          script: tox -e $PY
    """)
    assert names(p) == [
        "test: [3.11, linux]",
        "test: [3.12, linux]",
        "test: [3.13, linux]",
        "test: [3.13, windows]",
    ]
    job = p.job("test: [3.13, windows]")
    assert job.matrix == {"PY": "3.13", "OS": "windows"}
    assert job.variables["PY"] == "3.13" and job.variables["OS"] == "windows"
    assert job.image == "python:3.13"
    assert (job.node_index, job.node_total) == (4, 4)


def test_matrix_rules_use_matrix_variables() -> None:
    p = load("""
        deploy:
          parallel:
            matrix:
              - REGION: [eu, us]
          script: x
          rules:
            - if: $REGION == "eu"
    """)
    assert names(p) == ["deploy: [eu]"]


def test_needs_matrix_filter_and_direct_names() -> None:
    p = load("""
        build:
          stage: build
          parallel:
            matrix:
              - PROVIDER: [aws, gcp]
                STACK: [app, db]
          script: x
        deploy_aws:
          stage: deploy
          needs:
            - job: build
              parallel:
                matrix:
                  - PROVIDER: aws
          script: x
        deploy_one:
          stage: deploy
          needs: ["build: [gcp, db]"]
          script: x
        in_matrix:
          stage: deploy
          parallel:
            matrix:
              - PROVIDER: [aws, gcp]
          needs:
            - job: build
              parallel:
                matrix:
                  - PROVIDER: $PROVIDER
                    STACK: app
          script: x
    """)
    assert needs(p, "deploy_aws") == ["build: [aws, app]", "build: [aws, db]"]
    assert needs(p, "deploy_one") == ["build: [gcp, db]"]
    assert needs(p, "in_matrix: [gcp]") == ["build: [gcp, app]"]


def test_needs_forms() -> None:
    p = load("""
        a:
          stage: build
          script: x
        b:
          stage: build
          script: x
        c:
          needs:
            - a
            - job: b
              artifacts: false
            - job: gone
              optional: true
          script: x
        d:
          needs: []
          stage: deploy
          script: x
    """)
    c = p.job("c")
    assert c.needs is not None
    assert [(n.job, n.artifacts) for n in c.needs] == [("a", True), ("b", False)]
    assert needs(p, "d") == []
    assert p.upstream(p.job("d")) == ()


def test_missing_and_excluded_needs() -> None:
    diags = errors("""
        a:
          script: x
          rules:
            - if: $NOPE
        b:
          needs: [a]
          script: x
        c:
          needs: [ghost, .hidden]
          script: x
    """)
    text = [str(d) for d in diags]
    assert text[0].startswith(
        ".gitlab-ci.yml:7:11: job 'b' needs 'a', which is not in this pipeline"
    )
    assert text[1] == ".gitlab-ci.yml:10:11: job 'c' needs 'ghost', which does not exist"
    assert "hidden jobs" in text[2]


def test_needs_on_later_stage_is_allowed() -> None:
    p = load("""
        early:
          stage: build
          needs: [late]
          script: x
        late:
          stage: test
          needs: []
          script: x
    """)
    assert needs(p, "early") == ["late"]


def test_cycles() -> None:
    text = messages("""
        a:
          needs: [b]
          script: x
        b:
          needs: [a]
          script: x
        self:
          needs: [self]
          script: x
    """)
    assert "needs form a cycle: a → b → a" in text
    assert "needs form a cycle: self → self" in text


def test_cycle_through_stage_order() -> None:
    text = messages("""
        a:
          stage: build
          needs: [b]
          script: x
        b:
          stage: test
          script: x
    """)
    assert "needs form a cycle" in text and "earlier stages" in text


def test_dependencies() -> None:
    p = load("""
        build:
          stage: build
          parallel: 2
          script: x
        other:
          stage: build
          script: x
        test:
          dependencies: [build]
          script: x
        none:
          dependencies: []
          script: x
    """)
    assert p.job("test").dependencies == ("build 1/2", "build 2/2")
    assert p.job("none").dependencies == ()
    assert p.job("other").dependencies is None
    text = messages("""
        a:
          stage: deploy
          script: x
        b:
          dependencies: [a, ghost]
          script: x
        c:
          stage: deploy
          needs: []
          dependencies: [b]
          script: x
    """)
    assert "dependency 'a' of stage 'deploy', which does not run before stage 'test'" in text
    assert "job 'b' has dependency 'ghost', which does not exist" in text
    assert "must also be in its needs" in text


def test_duplicate_names_after_expansion() -> None:
    text = messages("""
        test:
          parallel: 2
          script: x
        test 1/2:
          script: x
    """)
    assert "job name 'test 1/2' is defined twice" in text


def test_matrix_limit() -> None:
    values = ", ".join(str(i) for i in range(15))
    text = messages(
        f"job:\n  parallel:\n    matrix:\n      - A: [{values}]\n        B: [{values}]\n  "
        "script: x\n"
    )
    assert "makes 225 jobs; at most 200" in text


def test_thousand_jobs_are_fast() -> None:

    values = ", ".join(f"v{i}" for i in range(20))
    jobs = "\n".join(
        f"job{n}:\n  parallel:\n    matrix:\n      - A: [{values}]\n        B: [x, y, z, w, q]\n "
        " script: x\n"
        f"  needs: [{'job' + str(n - 1) if n else ''}]"
        for n in range(10)
    )
    p = load(jobs)
    assert len(p.jobs) == 1000
    assert len(p.job("job5: [v0, x]").needs or ()) == 100


def test_cycle_through_large_groups_and_repeated_missing_needs() -> None:
    text = messages("""
        a:
          parallel: 6
          needs: [b]
          script: x
        b:
          parallel: 6
          needs: [a]
          script: x
        c:
          needs: [ghost]
          script: x
        d:
          needs: [ghost]
          script: x
    """)
    assert "needs form a cycle: a 1/6 → b 1/6 → a 1/6" in text
    assert "job 'c' needs 'ghost'" in text and "job 'd' needs 'ghost'" in text
