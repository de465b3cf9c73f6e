"""HTTP health probes of a rollout step: samples taken, the verdict left to the domain.

Each sample is one GET with the check's timeout; a connection error or timeout is a
sample without status. No retries: a probe that needs retries to pass is failing.
Probing runs on the engine's thread pool and stops early when the engine shuts down.
"""

from __future__ import annotations

import threading
import time

import httpx

from farm import __version__
from farm.rollout.checks import Sample
from farm.rollout.model import HttpCheck


def probe(check: HttpCheck, url: str, stop: threading.Event) -> list[Sample]:
    """Take ``check.samples`` samples of ``url``, ``check.interval`` seconds apart."""
    samples: list[Sample] = []
    headers = {"User-Agent": f"farm-rollout/{__version__}"}
    with httpx.Client(timeout=check.timeout, headers=headers, follow_redirects=False) as http:
        for i in range(check.samples):
            if i and stop.wait(check.interval):
                break
            t0 = time.perf_counter()
            try:
                status: int | None = http.get(url).status_code
            except httpx.HTTPError:
                status = None
            samples.append(Sample(status, time.perf_counter() - t0))
    return samples
