"""Labels on farm containers, and the reaper that removes the ones nobody owns.

Every container the executor creates (job, service sidecars, pod holder) carries
the same ``farm.*`` labels. A worker that crashed, or a dockerd that restarted,
can leave such containers behind; the reaper lists them by label and removes
the ones whose job is no longer running, as decided by the caller's ``keep``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import docker
import docker.errors
import requests

from farm.errors import ExecutorError, ServiceUnavailable

log = logging.getLogger(__name__)

LABEL_BUILD = "farm.build"
LABEL_JOB = "farm.job"
LABEL_ATTEMPT = "farm.attempt"
LABEL_WORKER = "farm.worker"
#: "job", "service" or "holder": what a container is within a job's pod.
LABEL_ROLE = "farm.role"
#: Comma-separated aliases of a service container, for people reading `docker ps`.
LABEL_SERVICE_ALIAS = "farm.service.alias"

ROLE_JOB = "job"
ROLE_SERVICE = "service"
ROLE_HOLDER = "holder"


def job_labels(build_id: str | int, job_id: str | int, attempt: int, worker: str) -> dict[str, str]:
    """The labels that tie a container to one attempt of one job on one worker."""
    return {
        LABEL_BUILD: str(build_id),
        LABEL_JOB: str(job_id),
        LABEL_ATTEMPT: str(attempt),
        LABEL_WORKER: worker,
    }


def reap(
    client: docker.DockerClient,
    keep: Callable[[dict[str, str]], bool],
    worker: str | None = None,
) -> list[str]:
    """Force-remove every farm container (any state) for which ``keep(labels)`` is False.

    Only containers labelled ``farm.job`` are considered, and only those of
    ``worker`` when given, so a worker's reaper never touches its neighbours'
    jobs on a shared daemon. Returns the ids removed. Containers that vanish
    while we look (their own executor removed them) are skipped silently.
    """
    label_filters = [LABEL_JOB]
    if worker is not None:
        label_filters.append(f"{LABEL_WORKER}={worker}")
    # The low-level list returns labels directly; the high-level one would
    # inspect every container, one round trip each, to build model objects.
    try:
        summaries: list[dict[str, Any]] = client.api.containers(
            all=True, filters={"label": label_filters}
        )
    except requests.exceptions.ConnectionError as exc:
        raise ServiceUnavailable(f"cannot reach dockerd to reap containers: {exc}") from exc
    except docker.errors.DockerException as exc:
        raise ExecutorError(f"cannot list farm containers: {exc}") from exc
    removed: list[str] = []
    for summary in summaries:
        cid = str(summary["Id"])
        labels: dict[str, str] = dict(summary.get("Labels") or {})
        if keep(labels):
            continue
        try:
            # v=True: anonymous volumes (from an image's VOLUME) die with it.
            client.api.remove_container(cid, force=True, v=True)
        except docker.errors.NotFound:
            continue
        except docker.errors.APIError as exc:
            # 409 "removal already in progress": someone else is removing it.
            if exc.status_code == 409:
                continue
            raise ExecutorError(f"cannot remove container {cid[:12]}: {exc.explanation}") from exc
        log.info("reaped container %s (labels %s)", cid[:12], labels)
        removed.append(cid)
    return removed
