"""The schedule timer: fires due pipeline schedules, each run exactly once.

Every API process runs :meth:`Scheduler.run` on a thread (farm/api/app.py), all against
one database. A tick reads the due schedules and, for each, moves ``next_run_at`` from
the value it read to the next slot *after now* with a compare-and-set
(:meth:`ScheduleStore.claim`); only the timer whose update matched submits the build. So:

* two timers (two API processes) never fire one run twice;
* runs missed while the farm was down fire once, then the timetable resumes from now;
* a crash between the claim and the submission loses that one run (at most once, like a
  cron daemon), never repeats it.

Builds are submitted like ``POST /api/v1/builds``, with ``CI_PIPELINE_SOURCE=schedule``
and the schedule's variables; a run that cannot be built (no such ref, a broken pipeline,
``workflow: rules`` said no) is recorded on the schedule as its ``last_error``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from farm.coordinator.service import Coordinator
from farm.coordinator.submit import Submission, submit
from farm.domain.clock import utcnow
from farm.domain.records import BuildRecord, PipelineSource
from farm.domain.schedules import ScheduleRecord, next_run
from farm.errors import FarmError

__all__ = ["ScheduleStore", "Scheduler"]

log = logging.getLogger("farm.coordinator")


class ScheduleStore(Protocol):
    """What the timer needs of the schedules' storage (farm/db/schedules.py)."""

    def due(self, now: datetime, limit: int = 100) -> list[ScheduleRecord]: ...

    def claim(self, schedule_id: int, seen: datetime, next_run_at: datetime) -> bool: ...

    def record_run(
        self, schedule_id: int, at: datetime, build_id: int | None, error: str | None
    ) -> None: ...


@dataclass
class Scheduler:
    """Fires due schedules (:meth:`tick`) on a timer (:meth:`run`)."""

    coord: Coordinator
    schedules: ScheduleStore
    clock: Callable[[], datetime] = utcnow  # tests move time
    _stop: threading.Event = field(default_factory=threading.Event, init=False, repr=False)

    def tick(self) -> list[BuildRecord]:
        """One pass: fire every due schedule this process claims; the builds made."""
        now = self.clock()
        made: list[BuildRecord] = []
        for schedule in self.schedules.due(now):
            seen = schedule.next_run_at
            if seen is None:
                continue
            upcoming = next_run(schedule.cron, schedule.timezone, now)
            if not self.schedules.claim(schedule.id, seen, upcoming):
                continue  # another timer fired it (or it was paused or edited meanwhile)
            build = self.fire(schedule, now)
            if build is not None:
                made.append(build)
        return made

    def fire(
        self, schedule: ScheduleRecord, now: datetime, *, reraise: bool = False
    ) -> BuildRecord | None:
        """Submit a build of ``schedule`` and record it (or the error) on the schedule.

        ``reraise``: a person asked ("run now"), so the error is theirs to see as well.
        """
        try:
            build = submit(
                self.coord,
                Submission(
                    repo=schedule.repo,
                    ref=schedule.ref,
                    variables=tuple(schedule.variables.items()),
                    source=PipelineSource.SCHEDULE,
                ),
            )
        except FarmError as exc:
            log.warning(
                "schedule %s (%s %s): no build: %s",
                schedule.id,
                schedule.project,
                schedule.ref,
                exc,
            )
            self.schedules.record_run(schedule.id, now, None, str(exc)[:2000])
            if reraise:
                raise
            return None
        log.info(
            "schedule %s (%s %s): build %s", schedule.id, schedule.project, schedule.ref, build.id
        )
        self.schedules.record_run(schedule.id, now, build.id, None)
        return build

    def run(self, interval: float) -> None:
        """Tick every ``interval`` seconds until :meth:`stop`."""
        while not self._stop.wait(interval):
            try:
                self.tick()
            except Exception as exc:  # a DB blip: the next tick tries again
                log.error("schedule pass failed: %s", exc)

    def stop(self) -> None:
        """End :meth:`run`."""
        self._stop.set()
