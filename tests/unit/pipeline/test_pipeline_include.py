"""include: local files, wildcards, nesting, merge order and offline-only kinds."""

from __future__ import annotations

from pipeline_testkit import ctx, errors, load, messages, names


def test_local_include_forms_and_merge_order() -> None:
    files = {
        "ci/a.yml": "a:\n  script: from-a\n  variables: {X: a}\n",
        "ci/b.yml": "b:\n  script: from-b\n",
        "ci/over.yml": "a:\n  variables: {X: over, Y: y}\n",
    }
    p = load(
        """
        include:
          - ci/a.yml
          - local: /ci/b.yml
          - {local: ci/over.yml}
        a:
          tags: [main-file]
        """,
        files=files,
    )
    assert names(p) == ["a", "b"]
    a = p.job("a")
    assert a.script == ("from-a",)
    assert a.variables == {"X": "over", "Y": "y"}
    assert a.tags == ("main-file",)


def test_top_level_include_string_and_nested_includes() -> None:
    files = {
        "one.yml": "include: two.yml\none:\n  script: x\n",
        "two.yml": "include: [one.yml]\ntwo:\n  script: y\n",
    }
    p = load("include: one.yml\n", files=files)
    assert sorted(names(p)) == ["one", "two"]


def test_wildcards() -> None:
    files = {
        "configs/a.yml": "a:\n  script: x\n",
        "configs/b.yaml": "b:\n  script: x\n",
        "configs/deep/c.yml": "c:\n  script: x\n",
        "configs/readme.md": "not yaml",
    }
    assert names(load("include: configs/*.yml\n", files=files)) == ["a"]
    assert names(load("include:\n  - local: 'configs/**.y*ml'\n", files=files)) == ["a", "b", "c"]
    assert names(load("include: 'configs/**/*.yml'\n", files=files)) == ["a", "c"]


def test_errors_in_included_files_name_that_file() -> None:
    files = {"ci/bad.yml": "bad:\n  stage: build\n  script: [x]\n  timeout: soon\n"}
    (d,) = errors("include: ci/bad.yml\n", files=files)
    assert (d.file, d.line, d.col) == ("ci/bad.yml", 4, 3)
    assert "timeout" in d.message


def test_missing_and_unreadable_includes() -> None:
    text = messages("include:\n  - missing.yml\n  - notyaml.txt\njob:\n  script: x\n")
    assert ".gitlab-ci.yml:2:5: included file 'missing.yml' does not exist" in text
    assert ".gitlab-ci.yml:3:5: included file 'notyaml.txt' must have a .yml" in text

    def boom(path: str) -> str:
        raise OSError("disk on fire")

    context = ctx()
    context = type(context)(read=boom)
    assert "disk on fire" in "\n".join(d.message for d in errors("include: x.yml\n", context))


def test_offline_include_kinds_are_reported_not_fetched() -> None:
    diags = errors("""
        include:
          - remote: https://example.com/ci.yml
          - https://example.com/other.yml
          - project: group/project
            file: /templates/ci.yml
          - template: Auto-DevOps.gitlab-ci.yml
          - component: gitlab.com/org/comp@1.0
        job:
          script: x
    """)
    assert [d.line for d in diags] == [3, 4, 5, 7, 8]
    assert diags[0].message.startswith("include:remote is not available offline")
    assert "include:project" in diags[2].message
    assert "include:template" in diags[3].message
    assert "include:component" in diags[4].message


def test_include_rules() -> None:
    files = {"extra.yml": "extra:\n  script: x\n"}
    text = """
        include:
          - local: extra.yml
            rules:
              - if: $CI_COMMIT_BRANCH == "main"
        job:
          script: x
    """
    assert names(load(text, files=files, variables={"CI_COMMIT_BRANCH": "main"})) == [
        "extra",
        "job",
    ]
    assert names(load(text, files=files, variables={"CI_COMMIT_BRANCH": "dev"})) == ["job"]


def test_included_file_syntax_error() -> None:
    (d,) = errors("include: bad.yml\njob:\n  script: x\n", files={"bad.yml": "a: [\n"})
    assert d.file == "bad.yml" and "invalid YAML" in d.message


def test_reference_into_included_file() -> None:
    files = {"lib.yml": ".scripts:\n  setup: [echo setup]\n"}
    p = load("include: lib.yml\njob:\n  script: !reference [.scripts, setup]\n", files=files)
    assert p.job("job").script == ("echo setup",)
