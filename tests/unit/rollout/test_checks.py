"""Judging check samples: failure ratio, p95 latency, missing samples, and the one-line reason."""

from __future__ import annotations

import json

import pytest

from farm.errors import InvalidRequest
from farm.rollout import (
    CheckOutcome,
    HttpCheck,
    JobCheck,
    Sample,
    evaluate,
    evaluate_job,
    render_url,
    summarize,
)
from farm.rollout.checks import p95

URL = "https://shop.example/health?scope={scope}&version={version}"


def test_the_reason_of_the_issue() -> None:
    check = HttpCheck(URL, samples=5, max_failure_ratio=0.2)
    samples = [(200, 0.05), (503, 0.4), (None, 2.0), (500, 0.412), (200, 0.1)]
    outcome = evaluate(check, samples, "usa", "1.4.2")
    assert not outcome.passed
    assert outcome.reason == (
        "http https://shop.example/health?scope=usa&version=1.4.2: "
        "3/5 failed (60% > 20%), p95 412 ms"
    )
    assert outcome.figures == {
        "check": "http",
        "url": "https://shop.example/health?scope=usa&version=1.4.2",
        "samples": 5,
        "failures": 3,
        "failure_ratio": 0.6,
        "p95_ms": 412.0,
        "statuses": {"200": 2, "500": 1, "503": 1, "error": 1},
    }
    json.dumps(outcome.figures)  # stored in the history as JSON


def test_passes_within_the_failure_budget() -> None:
    check = HttpCheck(URL, samples=5, max_failure_ratio=0.2)
    samples = [Sample(200, 0.01)] * 4 + [Sample(None, 5.0)]
    outcome = evaluate(check, samples, "canada", "1")
    assert outcome.passed
    assert outcome.reason.endswith(": 1/5 failed (20% <= 20%), p95 10 ms")


def test_by_default_a_single_failure_fails() -> None:
    check = HttpCheck(URL)
    assert evaluate(check, [(200, 0.1)] * 3, "a", "1").passed
    assert not evaluate(check, [(200, 0.1), (200, 0.1), (404, 0.1)], "a", "1").passed


def test_expect_status_lists() -> None:
    check = HttpCheck(URL, samples=2, expect_status=(200, 204))
    assert evaluate(check, [(204, 0.1), (200, 0.1)], "a", "1").passed
    assert not evaluate(check, [(204, 0.1), (301, 0.1)], "a", "1").passed


def test_latency_limit_uses_the_answered_samples() -> None:
    check = HttpCheck(URL, samples=4, max_failure_ratio=0.5, max_p95_ms=300)
    fast_errors = [(200, 0.1), (200, 0.2), (None, 0.001), (None, 0.001)]
    outcome = evaluate(check, fast_errors, "a", "1")
    assert outcome.passed and outcome.figures["p95_ms"] == 200.0
    assert outcome.reason.endswith("2/4 failed (50% <= 50%), p95 200 ms <= 300 ms")
    slow = evaluate(check, [(200, 0.1), (200, 0.1), (200, 0.1), (200, 0.5)], "a", "1")
    assert not slow.passed
    assert slow.reason.endswith("0/4 failed (0% <= 50%), p95 500 ms > 300 ms")


def test_no_answer_at_all_fails_a_latency_limit() -> None:
    check = HttpCheck(URL, samples=2, max_failure_ratio=1.0, max_p95_ms=300)
    outcome = evaluate(check, [(None, 5.0), (None, 5.0)], "a", "1")
    assert not outcome.passed
    assert outcome.figures["p95_ms"] is None
    assert outcome.reason.endswith("2/2 failed (100% <= 100%), no answers to time")


def test_missing_samples_count_as_failures() -> None:
    check = HttpCheck(URL, samples=5, max_failure_ratio=0.2)
    outcome = evaluate(check, [(200, 0.1)] * 3, "a", "1")
    assert not outcome.passed
    assert outcome.figures["samples"] == 5 and outcome.figures["failures"] == 2
    assert outcome.figures["statuses"] == {"200": 3, "missing": 2}
    assert evaluate(check, [], "a", "1").reason.endswith(
        "5/5 failed (100% > 20%), no answers to time"
    )


def test_odd_ratios_print_readably() -> None:
    check = HttpCheck(URL, samples=3, max_failure_ratio=0.125)
    outcome = evaluate(check, [(200, 0.1), (200, 0.1), (500, 0.1)], "a", "1")
    assert "1/3 failed (33.3% > 12.5%)" in outcome.reason


def test_bad_latencies_are_refused() -> None:
    with pytest.raises(InvalidRequest):
        evaluate(HttpCheck(URL), [(200, float("nan"))], "a", "1")
    with pytest.raises(InvalidRequest):
        evaluate(HttpCheck(URL), [(200, -1.0)], "a", "1")


def test_p95_is_a_nearest_rank_observed_value() -> None:
    assert p95([]) is None
    assert p95([0.3]) == 0.3
    assert p95([i / 100 for i in range(1, 101)]) == 0.95
    assert p95([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]) == 10


def test_render_url_encodes_the_values_entirely() -> None:
    assert render_url(URL, "usa", "1.4.2") == (
        "https://shop.example/health?scope=usa&version=1.4.2"
    )
    assert render_url(URL, "a b", "1.0+x/7&y=1") == (
        "https://shop.example/health?scope=a%20b&version=1.0%2Bx%2F7%26y%3D1"
    )
    assert render_url("http://x/{{literal}}/{scope}", "s", "v") == "http://x/{literal}/s"
    with pytest.raises(InvalidRequest, match="unknown placeholder"):
        render_url("http://x/{build}", "s", "v")


def test_job_checks() -> None:
    assert evaluate_job(JobCheck("smoke"), "success") == CheckOutcome(
        True, {"check": "job", "job": "smoke", "status": "success"}, "job smoke: success"
    )
    assert not evaluate_job(JobCheck("smoke"), "failed").passed


def test_summarize_a_step() -> None:
    good = CheckOutcome(True, {"n": 1}, "fine")
    bad = CheckOutcome(False, {"n": 2}, "http x: 3/5 failed (60% > 20%)")
    assert summarize([good, good]) == CheckOutcome(
        True, {"checks": [{"n": 1}, {"n": 1}]}, "2 checks passed"
    )
    assert summarize([]).passed and summarize([]).reason == "no checks configured"
    verdict = summarize([good, bad, bad])
    assert not verdict.passed
    assert verdict.reason == "http x: 3/5 failed (60% > 20%) (and 1 more failed checks)"
