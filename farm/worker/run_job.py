"""The only task: run one attempt of one job. Thin by design — see runner.py.

Also the worker's housekeeping threads, started when the worker is ready: the reaper
(orphaned containers, and job dirs of dead attempts) and the spool sender (reports
left on disk by a worker that died or stopped before the API took them).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery, signals

from farm.errors import ConfigError
from farm.executor.docker import DockerExecutor
from farm.executor.noop import NoopExecutor
from farm.executor.reaper import reap
from farm.registry.client import RegistryClient
from farm.settings import get_settings
from farm.worker import heartbeat
from farm.worker.api_client import CoordinatorClient
from farm.worker.app import RUN_JOB, JobFailed, make_celery
from farm.worker.runner import LABEL_API, JobRunner
from farm.worker.spool import resend_leftovers
from farm.worker.workdir import WorkDir

log = logging.getLogger("farm.worker")
app: Celery = make_celery(get_settings())
_runner: JobRunner | None = None
# Set when the worker begins to shut down: attempts stop waiting for the API to take
# their reports (the spool keeps them) and the housekeeping threads end.
_stopping = threading.Event()
SPOOL_PASS_EVERY = 2.0  # seconds between passes of the leftover spool sender


def runner() -> JobRunner:
    """The process's runner, built on first use (after fork, never at import)."""
    global _runner
    if _runner is None:
        settings = get_settings()
        token = settings.client_token("worker")
        _runner = JobRunner(
            settings=settings,
            executor=NoopExecutor()
            if settings.executor == "noop"
            else DockerExecutor(pull=settings.image_pull),
            coordinator=CoordinatorClient(settings.resolved_api_url, token=token),
            registry=RegistryClient(settings.resolved_api_url, token=token),
            stopping=_stopping,
        )
    return _runner


# What JobRunner.run answers for an attempt that did not fail.
_NOT_FAILED = frozenset({"exit 0", "stale", "canceled"})


# ``throws``: an expected failure, logged by Celery in one line, no traceback.
@app.task(name=RUN_JOB, bind=True, acks_late=True, throws=(JobFailed,))
def run_job(self: Any, job_id: int, attempt: int) -> str:
    """Run ``attempt`` of job ``job_id``; duplicates and stale attempts do nothing.

    A failed attempt (reported to the API first) raises :class:`JobFailed`, so Flower
    shows a failed job as a FAILURE task; it is acked, never retried by Celery.
    """
    outcome = runner().run(job_id, attempt)
    if outcome not in _NOT_FAILED:
        raise JobFailed(f"job {job_id} attempt {attempt}: {outcome}")
    return outcome


def reap_once() -> list[str]:
    """Remove this worker's labelled containers whose attempt no longer runs."""
    settings = get_settings()
    executor = DockerExecutor()
    client = CoordinatorClient(settings.resolved_api_url, token=settings.client_token("worker"))
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


def sweep_once() -> list[str]:
    """Remove the job dirs of this work dir that no live attempt holds."""
    return [str(p) for p in WorkDir(get_settings().resolved_work_dir).sweep()]


def _reaper_loop(stop: threading.Event) -> None:
    interval = get_settings().reap_interval
    while True:
        try:
            removed = reap_once()
            if removed:
                log.warning("reaper removed %d orphaned container(s)", len(removed))
        except Exception as exc:
            log.warning("reaper pass failed: %s", exc)
        try:
            sweep_once()
        except Exception as exc:
            log.warning("job dir sweep failed: %s", exc)
        if stop.wait(interval):
            return


def _spool_loop(stop: threading.Event) -> None:
    """Send the reports dead or stopped attempts left in the spool, until shutdown."""
    settings = get_settings()
    directory = WorkDir(settings.resolved_work_dir).spool_dir
    client = CoordinatorClient.for_spool(settings.resolved_api_url, settings.client_token("worker"))
    try:
        while True:
            try:
                resend_leftovers(directory, client, settings.spool_patience)
            except Exception as exc:
                log.warning("spool pass failed: %s", exc)
            if stop.wait(SPOOL_PASS_EVERY):
                return
    finally:
        client.close()


@signals.worker_ready.connect
def _start_housekeeping(sender: Any = None, **_: Any) -> None:
    settings = get_settings()  # the heartbeat first: the API lists even a broken worker
    heartbeat.start(sender, settings, settings.client_token("worker"), _stopping)
    # The work dir is made private before any job runs and before anything is swept.
    # One this worker cannot own is logged here, and fails every job with the same line.
    try:
        WorkDir(get_settings().resolved_work_dir).prepare()
    except (ConfigError, OSError) as exc:
        log.error("the work dir is unusable, no job can run: %s", exc)
        return
    for name, target in (("farm-reaper", _reaper_loop), ("farm-spool", _spool_loop)):
        threading.Thread(target=target, args=(_stopping,), daemon=True, name=name).start()


@signals.worker_shutting_down.connect
def _shutting_down(**_: Any) -> None:
    _stopping.set()


@signals.worker_shutdown.connect
def _stop(**_: Any) -> None:
    _stopping.set()
