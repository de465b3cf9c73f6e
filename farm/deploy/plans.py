"""Reading a release's rollout plan from the commit it was built from.

The plan is versioned with the code: ``.farm/rollout.yml`` in the released build's source
snapshot (a tar the coordinator stored by digest). It is read by streaming the snapshot
and stopping at that member, never unpacking anything to disk.
"""

from __future__ import annotations

import tarfile
import threading
from collections.abc import Iterator
from io import RawIOBase

from farm.domain.records import BuildRecord
from farm.errors import Diagnostic, InvalidRequest, PlanError
from farm.registry.store import BlobStore
from farm.rollout.model import Plan
from farm.rollout.plan import load_plan
from farm.rollout.planread import MAX_PLAN_BYTES
from farm.rollout.records import RolloutRecord

PLAN_FILE = ".farm/rollout.yml"
_NAMES = {PLAN_FILE, "./" + PLAN_FILE, ".farm/rollout.yaml", "./.farm/rollout.yaml"}


class _ChunkReader(RawIOBase):
    """A readable file over an iterator of byte chunks (what tarfile's stream mode needs)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buf:
            try:
                self._buf = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def plan_text(blobs: BlobStore, build: BuildRecord) -> tuple[str, str] | None:
    """(file name, text) of the build's rollout plan, or None when the commit has none."""
    reader = _ChunkReader(blobs.open_read(build.snapshot_digest))
    with tarfile.open(fileobj=reader, mode="r|") as tar:
        for member in tar:
            if member.name not in _NAMES or not member.isfile():
                continue
            if member.size > MAX_PLAN_BYTES:
                name = member.name.removeprefix("./")
                raise PlanError(
                    Diagnostic(
                        name,
                        1,
                        1,
                        f"{member.size} bytes is over the {MAX_PLAN_BYTES}"
                        "-byte limit of a rollout plan",
                    )
                )
            data = tar.extractfile(member)
            assert data is not None
            return member.name.removeprefix("./"), data.read().decode("utf-8", "replace")
    return None


def read_plan(blobs: BlobStore, build: BuildRecord) -> Plan:
    """The validated plan of ``build``'s commit; PlanError (file:line) or InvalidRequest."""
    found = plan_text(blobs, build)
    if found is None:
        raise InvalidRequest(
            f"commit {build.commit[:8]} of {build.project} has no {PLAN_FILE}: "
            "a rollout needs a plan in the repository (see configs/rollout/)"
        )
    name, text = found
    plan = load_plan(text, name)
    jobs = {j.name for j in build.jobs}
    wanted = [plan.deploy_job] if plan.deploy_job else []
    wanted += [c.job for s in plan.steps for c in s.checks if c.kind == "job"]
    missing = sorted({j for j in wanted if j not in jobs})
    if missing:
        raise PlanError(
            Diagnostic(
                name,
                1,
                1,
                f"job(s) {', '.join(missing)} named by the plan are not in build "
                f"{build.id}'s pipeline (jobs: {', '.join(sorted(jobs))})",
            )
        )
    return plan


class PlanCache:
    """The plan each rollout was started with, validated once per process.

    A stored plan never changes (a later edit of the repository's file does not touch a
    rollout under way), so it is read back and validated — about 0.1 s for 10,000
    CIDRs — only the first time the engine or the routing table needs it.
    """

    def __init__(self) -> None:
        self._plans: dict[int, Plan] = {}
        self._lock = threading.Lock()

    def put(self, rollout_id: int, plan: Plan) -> None:
        """Remember the plan a rollout was just created with."""
        with self._lock:
            self._plans[rollout_id] = plan

    def of(self, rec: RolloutRecord) -> Plan:
        """The plan of ``rec``."""
        with self._lock:
            plan = self._plans.get(rec.id)
        if plan is None:
            plan = Plan.from_dict(rec.plan, f"rollout {rec.id} plan")
            self.put(rec.id, plan)
        return plan
