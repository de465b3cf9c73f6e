"""The Celery app: Redis broker, late acks, one message per free slot, events for Flower."""

from __future__ import annotations

from celery import Celery

from farm.domain.records import BuildRecord, JobRecord
from farm.domain.state import DEFAULT_QUEUE
from farm.settings import Settings

RUN_JOB = "farm.run_job"


def make_celery(settings: Settings) -> Celery:
    """A configured Celery app; tasks are registered by importing ``farm.worker.run_job``."""
    app = Celery("farm", broker=settings.broker_url, include=["farm.worker.run_job"])
    # Redis redelivers an unacked message after visibility_timeout: keep it above the
    # longest job so a long job is never handed out twice (celery#5935). Lost workers
    # are caught by the coordinator's heartbeat watchdog long before this.
    visibility = settings.job_timeout + 900
    app.conf.update(
        task_default_queue=DEFAULT_QUEUE,
        task_ignore_result=True,  # results travel over the farm API, not the backend
        result_backend=settings.result_backend,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_disable_prefetch=True,  # fetch only when a slot is free (celery#6500)
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_serializer="json",
        accept_content=["json"],
        broker_transport_options={"visibility_timeout": visibility},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
    )
    return app


class CeleryDispatcher:
    """Queues job attempts as Celery messages named after the build and job (Flower)."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def dispatch(self, job: JobRecord, build: BuildRecord, countdown: float | None = None) -> None:
        """Send ``run_job(job.id, job.attempt)`` to the job's queue."""
        self.app.send_task(
            RUN_JOB,
            args=(job.id, job.attempt),
            queue=job.queue,
            countdown=countdown or None,
            shadow=f"build {build.id} · {job.name} #{job.attempt}",
        )
