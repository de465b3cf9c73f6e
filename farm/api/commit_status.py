"""Reporting builds back to their git host: the ``on_build_changed`` hook of the API.

For a build a webhook made (it has an :class:`~farm.domain.records.BuildOrigin`) and a
host whose status token this API has, every status change queues one
``farm.commit_status`` task on :data:`~farm.domain.state.STATUS_QUEUE`; a worker posts
it (farm/worker/commit_status.py) with the token from *its* settings: a message never
carries one.

Ordering: the message's status is the build's status read *after* the transition, with a
per-build number taken in the same statement (:class:`~farm.db.status_seq.StatusSequence`);
the worker delivers a build's statuses one at a time (a Redis lock per build) and drops
any whose number is not above the last delivered. So a late ``running`` can never land
after ``success``, and whatever the interleaving, the last status the host shows is the
build's final one. A message the broker refused is lost (logged), and the next change
reports the build's status again.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from farm.coordinator.service import Coordinator
from farm.db.status_seq import StatusSequence
from farm.domain.records import BuildRecord
from farm.domain.state import STATUS_QUEUE
from farm.githost.status import GITHUB, GITLAB, STATUS_TASK, CommitStatus, build_url
from farm.settings import Settings

__all__ = ["CommitStatusNotifier", "install"]

log = logging.getLogger("farm.api")


class CommitStatusNotifier:
    """Queues a commit status task for each status change of a webhook build."""

    def __init__(self, celery: Any, sequence: StatusSequence, settings: Settings) -> None:
        self.celery = celery  # anything with Celery's send_task
        self.sequence = sequence
        self.settings = settings

    def enabled(self, host: str) -> bool:
        """Whether statuses go to ``host``: its token is configured."""
        token = {
            GITHUB: self.settings.github_status_token,
            GITLAB: self.settings.gitlab_status_token,
        }.get(host)
        return token is not None and bool(token.get_secret_value())

    def __call__(self, build: BuildRecord) -> None:
        origin = build.origin
        if origin is None or not self.enabled(origin.host):
            return
        taken = self.sequence.next(build.id)
        if taken is None:
            return
        seq, state = taken
        status = CommitStatus(
            host=origin.host,
            api_url=origin.api_url,
            project=origin.project,
            sha=build.commit,
            ref=build.ref,
            state=state,
            build_id=build.id,
            seq=seq,
            target_url=build_url(self.settings.resolved_api_url, build.id),
            context=self.settings.status_context,
        )
        self.celery.send_task(
            STATUS_TASK,
            args=(status.to_message(),),
            queue=STATUS_QUEUE,
            shadow=f"build {build.id} · {origin.host} status {state} #{seq}",
            # A broker that is down must not hold the request that changed the build.
            retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        )
        log.info("build %s: %s status %s (#%d) queued", build.id, origin.host, state, seq)


def install(
    coord: Coordinator, celery: Any, sessions: sessionmaker[Session], settings: Settings
) -> CommitStatusNotifier:
    """Report every webhook build's status changes back to its host (see the module)."""
    notifier = CommitStatusNotifier(celery, StatusSequence(sessions), settings)
    coord.on_build_changed.append(notifier)
    return notifier
