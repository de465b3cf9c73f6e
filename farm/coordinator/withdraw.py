"""Taking back the queued messages of jobs that will never run (a canceled build).

A canceled job's message would be refused by the claim's compare-and-set anyway, but a
message on a queue no worker serves (tags nobody has) would wait in the broker forever.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from farm.domain.records import JobRecord

log = logging.getLogger("farm.coordinator")


@runtime_checkable
class MessageWithdrawer(Protocol):
    """A dispatcher that can remove still-queued messages of jobs (Celery on Redis)."""

    def withdraw(self, jobs: Iterable[tuple[int, str]]) -> int:
        """Remove the queued messages of these (job id, queue) pairs; how many went."""
        ...


def withdraw_queued(dispatcher: object, jobs: Iterable[JobRecord]) -> int:
    """Best effort: a broker that cannot be reached now leaves the messages to the claim."""
    if not isinstance(dispatcher, MessageWithdrawer):
        return 0
    pairs = [(job.id, job.queue) for job in jobs]
    if not pairs:
        return 0
    try:
        return dispatcher.withdraw(pairs)
    except Exception as exc:  # the cancel itself already happened
        log.warning("could not withdraw the messages of %d canceled job(s): %s", len(pairs), exc)
        return 0
