"""``artifacts: reports: junit``: the job's JUnit XML files, summed into a TestReport.

GitLab collects reports whatever the job's result (a failing test run is when they
matter), so :func:`junit_report` runs after every attempt that got to run its script.
Parsing uses ``junitparser``; totals are counted from the test cases themselves rather
than from the suites' attributes, which many tools leave out or get wrong. Files are
bounded in size, and a file that is not JUnit XML is named in the job log and skipped:
a broken report never fails the job.
"""

from __future__ import annotations

import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from junitparser import Error, Failure, JUnitXml, Skipped, TestCase, TestSuite

from farm.domain.messages import MAX_FAILED_CASES, FailedCase, TestReport
from farm.registry.archive import select

MAX_REPORT_BYTES = 64 * 1024 * 1024  # one JUnit file; bigger ones are skipped, said so
_TEXT = 4096  # a case's name, class name or message, as the report model bounds it


def junit_report(
    workspace: Path, patterns: Sequence[str], say: Callable[[str], None]
) -> TestReport | None:
    """The summed report of the files ``patterns`` (GitLab globs) select in the workspace;
    None when the job has no junit reports or none of its files could be read."""
    if not patterns:
        return None
    root = workspace.resolve()
    files = [
        rel
        for rel, st in sorted(select(workspace, patterns).items())
        if stat.S_ISREG(st.st_mode)  # lstat: a symlink out of the workspace is not read
    ]
    if not files:
        say("WARNING: no files matched artifacts:reports:junit")
        return None
    cases: list[TestCase] = []
    read = 0
    for rel in files:
        path = workspace / rel
        if not path.resolve().is_relative_to(root):
            continue
        if path.stat().st_size > MAX_REPORT_BYTES:
            say(f"WARNING: junit report {rel} is over {MAX_REPORT_BYTES} bytes: not read")
            continue
        try:
            cases.extend(_cases(JUnitXml.fromfile(str(path))))
            read += 1
        except Exception as exc:  # any parse error: say which file, keep the job's result
            say(f"WARNING: junit report {rel} could not be read: {str(exc)[:200]}")
    return summarise(cases) if read else None


def _cases(xml: JUnitXml | TestSuite) -> Iterator[TestCase]:
    """Every test case of a <testsuites> or <testsuite> root, nested suites included."""
    for item in xml:
        if isinstance(item, TestSuite):
            yield from _cases(item)
        elif isinstance(item, TestCase):
            yield item


def summarise(cases: Iterable[TestCase]) -> TestReport:
    """Totals over ``cases`` and the first :data:`MAX_FAILED_CASES` failing ones."""
    tests = failures = errors = skipped = 0
    time = 0.0
    failed: list[FailedCase] = []
    for case in cases:
        tests += 1
        time += float(case.time or 0.0)
        results = list(case.result)
        bad = next((r for r in results if isinstance(r, Failure | Error)), None)
        if isinstance(bad, Error):
            errors += 1
        elif isinstance(bad, Failure):
            failures += 1
        elif any(isinstance(r, Skipped) for r in results):
            skipped += 1
        if bad is not None and len(failed) < MAX_FAILED_CASES:
            failed.append(
                FailedCase(
                    name=(case.name or "")[:_TEXT],
                    classname=(case.classname or "")[:_TEXT],
                    message=(bad.message or bad.text or "").strip()[:_TEXT],
                )
            )
    return TestReport(
        tests=tests,
        failures=failures,
        errors=errors,
        skipped=skipped,
        time=round(max(time, 0.0), 3),
        failed=failed,
    )
