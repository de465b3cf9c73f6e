"""An executor that starts no container: every job "runs" at once and exits 0.

For benchmarks only (``FARM_EXECUTOR=noop``): it measures the coordinator, Celery and
the worker protocol without Docker. Never use it on a real farm — nothing is built.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from farm.executor.base import ContainerJob, RunResult


class NoopExecutor:
    """:class:`~farm.executor.base.Executor` that runs nothing."""

    def run(
        self,
        job: ContainerJob,
        on_output: Callable[[bytes], None],
        should_cancel: Callable[[], bool],
    ) -> RunResult:
        """Exit 0 immediately (one line of output, so logs are exercised)."""
        now = time.time()
        on_output(b"noop executor: nothing was run (FARM_EXECUTOR=noop, benchmarks only)\n")
        return RunResult(exit_code=0, reason=None, started_at=now, finished_at=time.time())

    def image_exists(self, image: str) -> bool:
        """Every image "exists": nothing is pulled or started."""
        return True
