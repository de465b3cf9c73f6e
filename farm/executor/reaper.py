"""Labels on farm containers, the reaper that removes the ones nobody owns, the fence.

Every container the executor creates (job, service sidecars, pod holder) carries
the same ``farm.*`` labels. A worker that crashed, or a dockerd that restarted,
can leave such containers behind; the reaper lists them by label and removes
the ones whose job is no longer running, as decided by the caller's ``keep``.

The *fence* is the reaper's synchronous cousin: before an attempt of a job starts,
every container of another attempt of the same job on this dockerd is removed and
its removal confirmed, so two attempts of one job never run at once on one host.
(Across hosts, the job container's own lease watchdog stops an orphan in time; see
``farm/worker/lease.py``.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
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
#: Which farm (its API URL) a container belongs to: another farm's reaper or fence on
#: the same dockerd (a second install, a test farm) leaves it alone.
LABEL_API = "farm.api"
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
    removed: list[str] = []
    for summary in _list(client, label_filters):
        cid = str(summary["Id"])
        labels: dict[str, str] = dict(summary.get("Labels") or {})
        if keep(labels) or not _remove(client, cid):
            continue
        log.info("reaped container %s (labels %s)", cid[:12], labels)
        removed.append(cid)
    return removed


def fence(
    client: docker.DockerClient,
    scope: Mapping[str, str],
    attempt: int,
    timeout: float = 60.0,
) -> list[str]:
    """Remove every container of the job ``scope`` names whose attempt is not ``attempt``.

    ``scope`` holds the labels that identify the job (at least :data:`LABEL_JOB`; the
    executor adds :data:`LABEL_BUILD` and :data:`LABEL_API` when the job has them), so
    the fence never touches another farm's containers. Returns once dockerd lists none
    of them any more (a removal another process has in progress is waited for); raises
    :class:`ExecutorError` if some are still there after ``timeout`` seconds, and
    :class:`ServiceUnavailable` if dockerd cannot be reached: either way the new attempt
    must not start. Returns the ids removed.
    """
    if LABEL_JOB not in scope:
        raise ValueError(f"a fence needs the {LABEL_JOB} label, not {dict(scope)}")
    filters = [f"{key}={value}" for key, value in sorted(scope.items())]
    deadline = time.monotonic() + timeout
    removed: list[str] = []
    while True:
        others = [
            s
            for s in _list(client, filters)
            if (s.get("Labels") or {}).get(LABEL_ATTEMPT) != str(attempt)
        ]
        if not others:
            return removed
        if time.monotonic() > deadline:
            left = ", ".join(str(s["Id"])[:12] for s in others)
            raise ExecutorError(
                f"containers of another attempt of job {scope[LABEL_JOB]} are still there "
                f"after {timeout:g} s ({left}): not starting attempt {attempt} beside them"
            )
        for summary in others:
            cid = str(summary["Id"])
            if _remove(client, cid):
                labels = summary.get("Labels") or {}
                log.warning(
                    "fence: removed container %s of job %s attempt %s before attempt %s",
                    cid[:12],
                    scope[LABEL_JOB],
                    labels.get(LABEL_ATTEMPT),
                    attempt,
                )
                removed.append(cid)
        time.sleep(0.1)  # then list again: removals by others must be seen to complete


def _list(client: docker.DockerClient, label_filters: list[str]) -> list[dict[str, Any]]:
    """Farm containers (any state) matching every label filter, as list summaries."""
    # The low-level list returns labels directly; the high-level one would
    # inspect every container, one round trip each, to build model objects.
    try:
        return list(client.api.containers(all=True, filters={"label": label_filters}))
    except requests.exceptions.ConnectionError as exc:
        raise ServiceUnavailable(f"cannot reach dockerd to list farm containers: {exc}") from exc
    except docker.errors.DockerException as exc:
        raise ExecutorError(f"cannot list farm containers: {exc}") from exc


def _remove(client: docker.DockerClient, cid: str) -> bool:
    """Force-remove one container; False if it was gone or someone else is removing it."""
    try:
        # v=True: anonymous volumes (from an image's VOLUME) die with it.
        client.api.remove_container(cid, force=True, v=True)
    except docker.errors.NotFound:
        return False
    except requests.exceptions.ConnectionError as exc:
        raise ServiceUnavailable(f"cannot reach dockerd to remove {cid[:12]}: {exc}") from exc
    except docker.errors.APIError as exc:
        # 409 "removal already in progress": someone else is removing it.
        if exc.status_code == 409:
            return False
        raise ExecutorError(f"cannot remove container {cid[:12]}: {exc.explanation}") from exc
    return True
