"""Resource groups: at most one job of a group runs at a time, across every build.

A group is a row ``resource_groups(name, holder_job_id)``. A job that is ready to run
first *takes* its group with a compare-and-set (``… WHERE holder IS NULL``); if the
group is busy the job simply stays ``created`` (GitLab's ``waiting_for_resource``,
expressed with an existing status word) and its build keeps waiting. When the holder
reaches a final status the group is released and the builds waiting on it are advanced,
oldest waiting job first (GitLab's ``oldest_first``-like order; ``unordered`` allows it).

A holder that is final but still recorded (a coordinator died between the job's last
transition and the release) is taken over by CAS on the old holder id, so a lost
release never blocks a group forever.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from farm.coordinator.ports import Store
from farm.domain.statuses import FINAL_JOB, JobStatus
from farm.errors import NotFound

log = logging.getLogger("farm.coordinator")


@dataclass
class ResourceGroups:
    """Takes and releases groups through the store's compare-and-set methods."""

    store: Store

    def take(self, name: str, job_id: int) -> bool:
        """Make ``job_id`` the holder of ``name``; False while another job holds it."""
        if self.store.take_resource_group(name, job_id):
            return True
        holder = self.store.resource_group_holder(name)
        if holder is None:  # released between our attempt and the read
            return self.store.take_resource_group(name, job_id)
        try:
            status = self.store.get_job(holder).status
        except NotFound:
            status = JobStatus.CANCELED  # its build was deleted: the group is free
        if status in FINAL_JOB:
            log.warning("resource group %s: holder job %s is %s; taking over", name, holder, status)
            return self.store.take_resource_group(name, job_id, stale=holder)
        return False

    def release(self, name: str, job_id: int, advance: Callable[[int], object]) -> None:
        """Free ``name`` if ``job_id`` holds it, then let the waiting builds (oldest first) run.

        ``advance`` is the coordinator's :meth:`advance`; the first build whose ready job
        takes the group ends the round — the others keep waiting for the next release.
        """
        if not self.store.release_resource_group(name, job_id):
            return
        for build_id in self.store.builds_waiting_for_group(name):
            try:
                advance(build_id)
            except Exception as exc:  # one broken build must not starve the group
                log.error("advancing build %s for group %s failed: %s", build_id, name, exc)
            if self.store.resource_group_holder(name) is not None:
                return

    def recover(self) -> int:
        """After a restart: free groups held by a job that never left ``created``.

        That only happens when the coordinator died between taking the group and
        queueing the job; the job will take the group again when its build advances.
        """
        freed = 0
        for name, holder in self.store.held_resource_groups():
            try:
                status = self.store.get_job(holder).status
            except NotFound:
                status = JobStatus.CANCELED
            if status == JobStatus.CREATED or status in FINAL_JOB:
                freed += int(self.store.release_resource_group(name, holder))
        return freed
