"""The only task: run one attempt of one job. Thin by design — see runner.py."""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery, signals

from farm.executor.docker import DockerExecutor
from farm.executor.reaper import reap
from farm.registry.client import RegistryClient
from farm.settings import get_settings
from farm.worker.api_client import CoordinatorClient
from farm.worker.app import RUN_JOB, make_celery
from farm.worker.runner import LABEL_API, JobRunner

log = logging.getLogger("farm.worker")
app: Celery = make_celery(get_settings())
_runner: JobRunner | None = None


def runner() -> JobRunner:
    """The process's runner, built on first use (after fork, never at import)."""
    global _runner
    if _runner is None:
        settings = get_settings()
        _runner = JobRunner(
            settings=settings,
            executor=DockerExecutor(),
            coordinator=CoordinatorClient(settings.resolved_api_url),
            registry=RegistryClient(settings.resolved_api_url),
        )
    return _runner


@app.task(name=RUN_JOB, bind=True, acks_late=True)
def run_job(self: Any, job_id: int, attempt: int) -> str:
    """Run ``attempt`` of job ``job_id``; duplicates and stale attempts do nothing."""
    return runner().run(job_id, attempt)


def reap_once() -> list[str]:
    """Remove this worker's labelled containers whose attempt no longer runs."""
    settings = get_settings()
    executor = DockerExecutor()
    client = CoordinatorClient(settings.resolved_api_url)
    try:

        def keep(labels: dict[str, str]) -> bool:
            if labels.get(LABEL_API) != settings.resolved_api_url:
                return True  # another farm's container
            try:
                pair = (int(labels["farm.job"]), int(labels["farm.attempt"]))
                return client.live([pair])[0]
            except Exception:
                return True  # when in doubt (API down), never kill a job

        # Any worker on this dockerd may reap: a crashed worker never comes back to
        # clean up after itself, and its attempt is no longer live anyway.
        return reap(executor.client, keep)
    finally:
        client.close()


def _reaper_loop(stop: threading.Event) -> None:
    interval = get_settings().reap_interval
    while True:
        try:
            removed = reap_once()
            if removed:
                log.warning("reaper removed %d orphaned container(s)", len(removed))
        except Exception as exc:
            log.warning("reaper pass failed: %s", exc)
        if stop.wait(interval):
            return


_stop_reaper = threading.Event()


@signals.worker_ready.connect
def _start_reaper(**_: Any) -> None:
    threading.Thread(
        target=_reaper_loop, args=(_stop_reaper,), daemon=True, name="farm-reaper"
    ).start()


@signals.worker_shutdown.connect
def _stop(**_: Any) -> None:
    _stop_reaper.set()
