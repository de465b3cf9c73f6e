"""Pure evaluation of a step's checks: samples in, a verdict with figures and one line out.

The controller (an edge module) sends the HTTP requests or runs the job and records what
came back; this module only judges. A sample is ``(status, latency_seconds)`` with
``status`` None when no HTTP answer came (refused, reset, timed out).

Rules of an :class:`~farm.rollout.model.HttpCheck`:

- a sample fails when it has no answer or its status is not in ``expect_status``;
- samples the check asked for but that were never taken count as failed: a controller
  that stopped early (or crashed) must not make a check pass on less evidence;
- it passes when ``failures / samples <= max_failure_ratio`` and, with ``max_p95_ms`` set,
  the 95th percentile (nearest rank) of the *answered* samples' latency is at most that.
  Unanswered samples are left out of the percentile: a refused connection is fast and
  would make latency look good, and it is already counted as a failure.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import quote

from farm.errors import InvalidRequest
from farm.rollout.model import URL_FIELDS, HttpCheck, JobCheck, render_template, template_fields

__all__ = ["CheckOutcome", "Sample", "evaluate", "evaluate_job", "p95", "render_url", "summarize"]


class Sample(NamedTuple):
    """One probe: the HTTP status (None: no answer) and how long it took in seconds."""

    status: int | None
    latency: float


@dataclass(frozen=True)
class CheckOutcome:
    """The verdict on one check (or on all checks of a step, see :func:`summarize`)."""

    passed: bool
    figures: dict[str, Any] = field(default_factory=dict)  # JSON-able
    reason: str = ""


def render_url(template: str, scope: str, version: str) -> str:
    """The check URL for ``scope`` and ``version``; both are percent-encoded entirely.

    Encoding with no safe characters means a version like ``1.0+build/7`` cannot add a
    path segment or a query parameter to the URL.
    """
    try:
        template_fields(template, URL_FIELDS)
    except ValueError as exc:
        raise InvalidRequest(f"check URL {template!r}: {exc}") from None
    values = {"scope": quote(scope, safe=""), "version": quote(version, safe="")}
    return render_template(template, values)


def p95(latencies: Iterable[float]) -> float | None:
    """The 95th percentile by nearest rank (an actually observed value), None when empty."""
    ordered = sorted(latencies)
    if not ordered:
        return None
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def _percent(ratio: float) -> str:
    return f"{round(ratio * 100, 1):g}%"


def evaluate(
    check: HttpCheck,
    samples: Sequence[Sample | tuple[int | None, float]],
    scope: str,
    version: str,
) -> CheckOutcome:
    """Judge an HTTP check of ``scope`` running ``version`` from its samples."""
    url = render_url(check.url, scope, version)
    taken = [Sample(*s) for s in samples]
    for s in taken:
        if not (isinstance(s.latency, int | float) and math.isfinite(s.latency) and s.latency >= 0):
            raise InvalidRequest(f"sample latency must be seconds >= 0, not {s.latency!r}")
    expected = set(check.expect_status)
    total = max(len(taken), check.samples)
    missing = total - len(taken)
    statuses = Counter("error" if s.status is None else str(s.status) for s in taken)
    if missing:
        statuses["missing"] = missing
    failures = missing + sum(1 for s in taken if s.status not in expected)
    ratio = failures / total
    answered = [s.latency for s in taken if s.status is not None]
    worst = p95(answered)
    p95_ms = None if worst is None else round(worst * 1000, 1)

    ratio_ok = ratio <= check.max_failure_ratio
    latency_ok = check.max_p95_ms is None or (p95_ms is not None and p95_ms <= check.max_p95_ms)
    cmp = "<=" if ratio_ok else ">"
    parts = [
        f"{failures}/{total} failed ({_percent(ratio)} {cmp} {_percent(check.max_failure_ratio)})"
    ]
    if p95_ms is None:
        parts.append("no answers to time")
    elif check.max_p95_ms is None:
        parts.append(f"p95 {p95_ms:.0f} ms")
    else:
        cmp = "<=" if latency_ok else ">"
        parts.append(f"p95 {p95_ms:.0f} ms {cmp} {check.max_p95_ms:g} ms")
    figures: dict[str, Any] = {
        "check": "http",
        "url": url,
        "samples": total,
        "failures": failures,
        "failure_ratio": round(ratio, 4),
        "p95_ms": p95_ms,
        "statuses": dict(sorted(statuses.items())),
    }
    passed = ratio_ok and latency_ok
    return CheckOutcome(passed, figures, f"http {url}: {', '.join(parts)}")


def evaluate_job(check: JobCheck, status: str) -> CheckOutcome:
    """Judge a job check from the final status of the job (``success`` passes)."""
    passed = status == "success"
    figures = {"check": "job", "job": check.job, "status": status}
    return CheckOutcome(passed, figures, f"job {check.job}: {status}")


def summarize(outcomes: Sequence[CheckOutcome]) -> CheckOutcome:
    """One verdict for a step: it passes when every check passed (no checks: it passes).

    The reason is the first failed check's line (what a person needs first), or a count.
    """
    failed = [o for o in outcomes if not o.passed]
    figures: dict[str, Any] = {"checks": [o.figures for o in outcomes]}
    if failed:
        more = f" (and {len(failed) - 1} more failed checks)" if len(failed) > 1 else ""
        return CheckOutcome(False, figures, failed[0].reason + more)
    if not outcomes:
        return CheckOutcome(True, figures, "no checks configured")
    noun = "check" if len(outcomes) == 1 else "checks"
    return CheckOutcome(True, figures, f"{len(outcomes)} {noun} passed")
