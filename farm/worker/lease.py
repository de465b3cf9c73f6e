"""The lease between a worker and its job container: the job dies when its worker does.

Docker keeps a container running when the process that started it dies (moby#22425),
so a SIGKILLed worker leaves its job running, and the coordinator hands the job to
another worker once its heartbeat lease runs out: two attempts of one job at once
(issue 16, item 4). Two fences close that:

* on the same dockerd, the next attempt removes the old attempt's containers before it
  starts (``farm.executor.reaper.fence``);
* everywhere, the job stops itself. The worker renews a lease file every second —
  ``/farm/lease`` in the container, on the *read-only* ``/farm`` mount, so the job
  cannot renew it itself — and the job's entry wrapper (``/farm/run.sh``, the shell
  farm already runs every script in) checks it every second with ``stat``/``date`` and
  kills every process of the job (``kill -KILL -1``; the container's init then exits)
  once it is older than the container lease.

The container lease (``FARM_CONTAINER_LEASE_SECONDS``, default 10 s) is capped at half
the coordinator's job lease (``FARM_JOB_LEASE_SECONDS``, default 30 s): a worker that
dies at *t* sent its last heartbeat shortly before *t*, so the coordinator retries the
job at *t* + 30 s at the earliest, while its container is dead by *t* + 10 s + 2 s.
The lease is about the worker only: while the API is down a live worker keeps renewing
it and its job runs on (the report waits in the spool).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from types import TracebackType

from farm.settings import Settings
from farm.worker.ticker import Timer, ticker

log = logging.getLogger("farm.worker")

# In the job's /farm directory (mounted read-only). An empty directory, not a file: only
# its modification time counts, and a file system creates a directory far cheaper.
LEASE_FILE = "lease"
RENEW_EVERY = 1.0  # seconds between renewals
MIN_LEASE = 2.0  # seconds: the container checks once a second, so less would be noise


def container_lease(settings: Settings) -> int:
    """Whole seconds a job container outlives its worker's last lease renewal, at most."""
    lease = min(settings.container_lease_seconds, settings.job_lease_seconds / 2)
    return max(math.ceil(MIN_LEASE), math.floor(lease))


class LeaseKeeper:
    """Renews one attempt's lease file every ``every`` seconds until closed.

    The file is created (renewed) on entering, so it is fresh when the container starts;
    the renewals run on the process's :data:`~farm.worker.ticker.ticker` (a file touch
    is all they do), not on a thread of the attempt's own.
    """

    def __init__(self, path: Path, every: float = RENEW_EVERY) -> None:
        self.path = path
        self.every = every
        self._timer: Timer | None = None

    def renew(self) -> None:
        """Touch the lease (create it if needed)."""
        try:
            os.utime(self.path)
        except FileNotFoundError:
            self.path.mkdir()

    def _tick(self) -> float:
        try:
            self.renew()
        except OSError as exc:  # the job dir went away: the run is over anyway
            log.warning("cannot renew the job lease %s: %s", self.path, exc)
        return self.every

    def __enter__(self) -> LeaseKeeper:
        self.renew()
        self._timer = ticker.after(self.every, self._tick)
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
