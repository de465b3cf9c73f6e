"""The dispatch outbox: sending job messages, and re-sending the ones the broker lost.

A job made ``pending`` is in the outbox until the broker took its message: its
``queued_at`` is recorded only after ``Dispatcher.dispatch`` returned, together with the
broker's *epoch* read before sending (:class:`~farm.coordinator.ports.BrokerProbe`: the
Redis ``run_id`` from ``INFO server``, new on every redis-server start). The watchdog
pass (:meth:`~Coordinator.sweep`, every ``FARM_WATCHDOG_INTERVAL``) sends:

(a) every pending job never queued: its publish failed ("could not queue job": the
    broker was down) or is still to come (beyond ``_INLINE``). While the broker cannot
    be reached, publishing backs off — 1 s doubling up to ``FARM_DISPATCH_RETRY_MAX`` —
    and a pass stops at its first failure, so an outage costs one failed publish per
    back-off step, not one per job; jobs made pending meanwhile simply wait in the outbox;
(b) every pending job queued to an earlier epoch: a redis-server restarted without
    persistence lost every message it held, and comparing epochs finds exactly the jobs
    that had one, without reading the queue. (A restart *with* persistence re-sends them
    as well: one duplicate per pending job per restart, never a flood.)
(c) a pending job queued — and due — more than ``FARM_REQUEUE_AFTER`` seconds ago, only
    while its queue is empty: then no message of it can still be waiting (a worker with
    prefetch disabled claims a message as soon as it takes it). This catches messages
    lost without a restart (a worker that gave up its claim while the API was down, a
    flushed database), and a queue that merely has a backlog is never added to.

After the API's own restart (:meth:`~Coordinator.recover`), (c) applies with no window.
With a dispatcher that cannot probe its broker, (a) still holds, and a restart re-sends
every pending job, as before the outbox existed. Every duplicate is harmless: a claim is
a compare-and-set on (job, attempt, ``pending``), so a canceled, running, finished or
re-attempted job refuses it. ``when: delayed`` jobs record when they are due
(``due_at``), and every (re-)send carries the delay that remains.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from farm.coordinator.parts import CoordinatorParts
from farm.coordinator.ports import BrokerProbe, Queued
from farm.domain.clock import utcnow
from farm.domain.records import BuildRecord, JobRecord

log = logging.getLogger("farm.coordinator")

_OUTBOX_PAGE = 500  # outbox entries read (and sent) at a time
_RETRY_FIRST = 1.0  # seconds before the first re-send to a broker that could not be reached
_FOREVER = timedelta(days=36500)


class OutboxMixin(CoordinatorParts):
    """The outbox methods of :class:`farm.coordinator.service.Coordinator`, which holds
    the state they use (declared in :mod:`farm.coordinator.parts`)."""

    def _probe(self) -> BrokerProbe | None:
        return self.dispatcher if isinstance(self.dispatcher, BrokerProbe) else None

    def _publish(
        self,
        items: Sequence[tuple[JobRecord, float | None]],
        build: BuildRecord | None = None,
        *,
        force: bool = False,
    ) -> int:
        """Send each (job, countdown) and record the ones the broker took; stop at the
        first failure (the rest stay in the outbox). While backing off from a failure,
        send nothing unless ``force``. Returns how many were sent."""
        if not items:
            return 0
        if not force and self.clock() < self._retry_at:
            log.warning(
                "broker unreachable a moment ago: %d job(s) wait in the outbox for the "
                "watchdog pass",
                len(items),
            )
            return 0
        builds = {build.id: build} if build is not None else {}
        for job, _ in items:
            if job.build_id not in builds:
                builds[job.build_id] = self.store.get_build(job.build_id, with_jobs=False)
        epoch = self._epoch_before_sending()
        # The timeline's ``queued`` mark: taken before sending, written after (the outbox
        # needs the broker's answer first), also on jobs a worker claimed meanwhile.
        queued = utcnow()
        sent: list[tuple[int, int]] = []
        try:
            for job, countdown in items:
                try:
                    self.dispatcher.dispatch(job, builds[job.build_id], countdown or None)
                except Exception as exc:  # the broker is down: the watchdog pass re-sends
                    log.error(
                        "could not queue job %s (%s): %s; %d job(s) left in the outbox",
                        job.id,
                        job.name,
                        exc,
                        len(items) - len(sent),
                    )
                    self._broker_failed()
                    return len(sent)
                sent.append((job.id, job.attempt))
            self._failures, self._retry_at = 0, 0.0
            return len(sent)
        finally:
            if sent:
                self.store.mark_queued(sent, queued, epoch)

    def _epoch_before_sending(self) -> str | None:
        """The broker epoch to record with messages about to be sent. Read *before*
        sending (or earlier: the last sweep's), so a broker that restarts in between
        leaves an old epoch on them, and the next sweep re-sends them."""
        probe = self._probe()
        if probe is not None and self._epoch is None:
            try:
                self._epoch = probe.broker_epoch()
            except Exception:
                return None  # unknown: the next sweep re-sends them once
        return self._epoch

    def _broker_failed(self) -> None:
        self._failures = min(self._failures + 1, 30)
        wait = min(self.settings.dispatch_retry_max, _RETRY_FIRST * 2 ** (self._failures - 1))
        self._retry_at = self.clock() + wait
        self._epoch = None

    def sweep(self, *, restart: bool = False) -> int:
        """The outbox pass (see the module's docstring): send what was never sent, re-send
        what the broker lost. ``restart``: right after this process started. Returns how
        many messages were sent."""
        if not restart and self.clock() < self._retry_at:
            return 0
        probe = self._probe()
        epoch: str | None = None
        now = utcnow()
        stale_before: datetime | None = None
        if probe is not None:
            try:
                epoch = probe.broker_epoch()
            except Exception as exc:
                log.warning("broker unreachable (%s): pending jobs wait in the outbox", exc)
                self._broker_failed()
                return 0
            self._epoch = epoch
            window = 0.0 if restart else self.settings.requeue_after
            stale_before = now - timedelta(seconds=window)
        elif restart:  # cannot tell what the broker still holds: every pending job again
            stale_before = now + _FOREVER
        queues: dict[str, int | None] = {}
        sent = after = 0
        while True:
            page = self.store.outbox(
                epoch=epoch, stale_before=stale_before, after_id=after, limit=_OUTBOX_PAGE
            )
            if not page:
                break
            after = page[-1].job.id
            with self._lock:
                sending = set(self._sending)
            items = [
                (entry.job, _countdown(entry.due_at, now))
                for entry in page
                if entry.job.id not in sending and self._missing(entry, epoch, probe, queues)
            ]
            done = self._publish(items, force=True)
            sent += done
            if done < len(items) or len(page) < _OUTBOX_PAGE:
                break
        if sent:
            log.warning("outbox: sent %d pending job message(s) the broker did not hold", sent)
        return sent

    @staticmethod
    def _missing(
        entry: Queued,
        epoch: str | None,
        probe: BrokerProbe | None,
        queues: dict[str, int | None],
    ) -> bool:
        """Whether the outbox entry's message must be (re-)sent: (a), (b) or (c)."""
        if entry.queued_at is None:
            return True  # (a) never sent
        if epoch is not None and entry.queued_epoch != epoch:
            return True  # (b) sent to a broker that restarted since
        if probe is None:
            return True  # after a restart, without a probe: all of them
        queue = entry.job.queue
        if queue not in queues:
            try:
                queues[queue] = probe.queue_length(queue)
            except Exception:
                queues[queue] = None
        return queues[queue] == 0  # (c) not claimed long after it was due, queue empty

    # --- worker reports --------------------------------------------------------------


def _countdown(due_at: datetime | None, now: datetime) -> float | None:
    """Seconds until ``due_at`` (None once due): what a re-sent delayed job still waits."""
    if due_at is None:
        return None
    left = (due_at - now).total_seconds()
    return left if left > 0 else None
