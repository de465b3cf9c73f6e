"""artifacts: reports: junit — parsed from the pipeline, summed on the worker."""

from __future__ import annotations

from pathlib import Path

from farm.domain.messages import ArtifactRules
from farm.pipeline.loader import load_pipeline
from farm.worker.reports import junit_report

XML = """<?xml version="1.0"?>
<testsuites><testsuite name="s">
<testcase classname="t.m" name="ok" time="0.25"/>
<testcase classname="t.m" name="bad" time="0.5">
  <failure message="assert 1 == 2">tb</failure>
</testcase>
<testcase classname="t.m" name="gone"><skipped/></testcase>
<testcase classname="t.n" name="err"><error message="boom"/></testcase>
</testsuite></testsuites>
"""


def test_totals_and_failing_cases(tmp_path: Path) -> None:
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "a.xml").write_text(XML)
    (tmp_path / "reports" / "b.xml").write_text(
        '<testsuite name="x"><testcase name="one" classname="c"/></testsuite>'
    )
    said: list[str] = []
    report = junit_report(tmp_path, ["reports/*.xml"], said.append)
    assert report is not None and said == []
    assert (report.tests, report.failures, report.errors, report.skipped) == (5, 1, 1, 1)
    assert report.time == 0.75
    assert [(c.name, c.classname, c.message) for c in report.failed] == [
        ("bad", "t.m", "assert 1 == 2"),
        ("err", "t.n", "boom"),
    ]


def test_broken_or_missing_files_are_named_and_do_not_fail(tmp_path: Path) -> None:
    (tmp_path / "junk.xml").write_text("not xml <")
    said: list[str] = []
    assert junit_report(tmp_path, ["junk.xml"], said.append) is None
    assert "junk.xml could not be read" in said[0]
    assert junit_report(tmp_path, ["none.xml"], said.append) is None
    assert "no files matched" in said[-1]
    assert junit_report(tmp_path, [], said.append) is None


def test_failing_cases_are_bounded(tmp_path: Path) -> None:
    cases = "".join(f'<testcase name="t{i}"><failure/></testcase>' for i in range(150))
    (tmp_path / "r.xml").write_text(f"<testsuite>{cases}</testsuite>")
    report = junit_report(tmp_path, ["r.xml"], print)
    assert report is not None and report.failures == 150 and len(report.failed) == 100


def test_the_pipeline_keeps_junit_paths_and_environment() -> None:
    text = """
test:
  script: [pytest --junitxml=report.xml]
  artifacts:
    reports:
      junit: [report.xml, "sub/*.xml"]
deploy:
  script: [./deploy]
  environment: {name: production, url: "https://example.com"}
"""
    pipeline = load_pipeline(text)
    test = next(j for j in pipeline.jobs if j.name == "test")
    assert test.artifacts is not None and test.artifacts.junit == ("report.xml", "sub/*.xml")
    assert ArtifactRules.of(test.artifacts).junit == ["report.xml", "sub/*.xml"]
    deploy = next(j for j in pipeline.jobs if j.name == "deploy")
    assert deploy.environment is not None and deploy.environment.name == "production"


def test_an_entity_bomb_is_refused_not_expanded(tmp_path: Path) -> None:
    """A job writes the report: a billion-laughs file must not blow up the worker."""
    levels = ['<!ENTITY l0 "lollollollollollollollollollol">']
    levels += [f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10)]
    (tmp_path / "bomb.xml").write_text(
        f'<?xml version="1.0"?>\n<!DOCTYPE b [{"".join(levels)}]>\n'
        '<testsuite><testcase name="&l9;"/></testsuite>\n'
    )
    said: list[str] = []
    assert junit_report(tmp_path, ["bomb.xml"], said.append) is None
    assert len(said) == 1 and "bomb.xml could not be read" in said[0]
