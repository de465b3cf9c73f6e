"""advance(): what runs when, what is skipped, how the build settles (dynamic dispatch)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pytest
from coordinator_kit import Rig
from fakes import FakeBlobs

from farm.domain.statuses import ArtifactKind, BuildStatus, JobStatus, SkipReason
from farm.errors import RegistryError
from farm.registry.store.digests import BlobInfo

STAGED = """
stages: [build, test, deploy]
compile:
  stage: build
  script: [make]
unit:
  stage: test
  script: [make test]
lint:
  stage: test
  script: [make lint]
ship:
  stage: deploy
  script: [make ship]
"""


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


def test_stages_run_in_order(rig: Rig) -> None:
    b = rig.start(STAGED)
    assert rig.statuses(b) == {
        "compile": "pending",
        "unit": "created",
        "lint": "created",
        "ship": "created",
    }
    assert rig.build(b).status == BuildStatus.PENDING
    rig.run(b, "compile")
    assert rig.with_status(b, JobStatus.PENDING) == ["unit", "lint"]
    assert rig.build(b).status == BuildStatus.RUNNING
    rig.run(b, "unit")
    assert rig.job(b, "ship").status == JobStatus.CREATED  # lint still holds the stage
    rig.run(b, "lint")
    rig.run(b, "ship")
    assert rig.dispatched(b) == ["compile", "unit", "lint", "ship"]
    assert rig.build(b).status == BuildStatus.SUCCESS


def test_needs_fan_out_and_fan_in(rig: Rig) -> None:
    b = rig.start(
        """
        stages: [build, test, deploy]
        a: {stage: build, script: [a]}
        b: {stage: test, script: [b], needs: [a]}
        c: {stage: test, script: [c], needs: [a]}
        d: {stage: deploy, script: [d], needs: [b, c]}
        slow: {stage: build, script: [s]}
        """
    )
    assert rig.with_status(b, JobStatus.PENDING) == ["a", "slow"]
    rig.run(b, "a")
    # needs, not stages: b and c start although `slow` (stage build) is still pending
    assert rig.with_status(b, JobStatus.PENDING) == ["b", "c", "slow"]
    rig.run(b, "b")
    assert rig.job(b, "d").status == JobStatus.CREATED  # fan-in waits for c
    rig.run(b, "c")
    assert rig.job(b, "d").status == JobStatus.PENDING
    rig.run_all_pending(b)
    assert rig.build(b).status == BuildStatus.SUCCESS


def test_empty_needs_start_at_once(rig: Rig) -> None:
    b = rig.start(
        """
        stages: [build, test, deploy]
        compile: {stage: build, script: [make]}
        docs: {stage: deploy, script: [docs], needs: []}
        """
    )
    assert rig.with_status(b, JobStatus.PENDING) == ["compile", "docs"]


def test_failure_skips_downstream_as_upstream_failed(rig: Rig) -> None:
    b = rig.start(
        """
        stages: [build, test, deploy]
        a: {stage: build, script: [a]}
        b: {stage: test, script: [b], needs: [a]}
        c: {stage: deploy, script: [c], needs: [b]}
        free: {stage: test, script: [f], needs: []}
        """
    )
    rig.run(b, "a", exit_code=2)
    a = rig.job(b, "a")
    assert (a.status, a.reason, a.exit_code) == (JobStatus.FAILED, "script_failure", 2)
    for name in ("b", "c"):  # down the whole needs chain, in one advance
        job = rig.job(b, name)
        assert (job.status, job.reason) == (JobStatus.SKIPPED, SkipReason.UPSTREAM_FAILED)
        assert job.finished_at is not None
    assert rig.build(b).status == BuildStatus.RUNNING  # `free` is still pending
    rig.run(b, "free")
    build = rig.build(b)
    assert build.status == BuildStatus.FAILED and build.finished_at is not None
    assert build.deliverable_digest is None
    assert [x.status for x in rig.finished] == [BuildStatus.FAILED]


def test_allow_failure_lets_the_pipeline_go_on(rig: Rig) -> None:
    b = rig.start(
        """
        stages: [test, deploy]
        flaky: {stage: test, script: [x], allow_failure: true}
        ship: {stage: deploy, script: [s]}
        """
    )
    rig.run(b, "flaky", exit_code=1)
    assert rig.job(b, "flaky").status == JobStatus.FAILED
    rig.run(b, "ship")
    assert rig.build(b).status == BuildStatus.SUCCESS


def test_allow_failure_exit_codes_allow_only_those(rig: Rig) -> None:
    text = """
        stages: [test, deploy]
        check: {stage: test, script: [x], allow_failure: {exit_codes: [42]}}
        ship: {stage: deploy, script: [s]}
        """
    allowed = rig.start(text)
    rig.run(allowed, "check", exit_code=42)
    assert rig.job(allowed, "ship").status == JobStatus.PENDING
    refused = rig.start(text)
    rig.run(refused, "check", exit_code=1)
    assert rig.job(refused, "ship").status == JobStatus.SKIPPED
    assert rig.build(refused).status == BuildStatus.FAILED


CLEANUP = """
stages: [test, cleanup]
t: {stage: test, script: [t]}
on_fail: {stage: cleanup, script: [x], when: on_failure}
always: {stage: cleanup, script: [x], when: always}
"""


def test_on_failure_and_always_when_everything_passes(rig: Rig) -> None:
    b = rig.start(CLEANUP)
    rig.run(b, "t")
    on_fail = rig.job(b, "on_fail")
    assert (on_fail.status, on_fail.reason) == (JobStatus.SKIPPED, SkipReason.NOT_NEEDED)
    assert rig.job(b, "always").status == JobStatus.PENDING
    rig.run(b, "always")
    assert rig.build(b).status == BuildStatus.SUCCESS


def test_on_failure_and_always_after_a_failure(rig: Rig) -> None:
    b = rig.start(CLEANUP)
    rig.run(b, "t", exit_code=1)
    assert rig.with_status(b, JobStatus.PENDING) == ["on_fail", "always"]
    rig.run_all_pending(b)
    assert rig.build(b).status == BuildStatus.FAILED


def test_manual_job_waits_and_optional_manual_does_not_block(rig: Rig) -> None:
    b = rig.start(
        """
        stages: [build, deploy, verify]
        compile: {stage: build, script: [make]}
        deploy: {stage: deploy, script: [d], when: manual}
        smoke: {stage: verify, script: [s]}
        """
    )
    rig.run(b, "compile")
    assert rig.job(b, "deploy").status == JobStatus.MANUAL
    assert "deploy" not in rig.dispatched(b)
    # a manual job is optional by default (GitLab): later stages go on
    rig.run(b, "smoke")
    assert rig.build(b).status == BuildStatus.SUCCESS


def test_blocking_manual_job_leaves_the_build_manual(rig: Rig) -> None:
    b = rig.start(
        """
        stages: [deploy, verify]
        deploy: {stage: deploy, script: [d], when: manual, allow_failure: false}
        smoke: {stage: verify, script: [s]}
        """
    )
    assert rig.job(b, "deploy").status == JobStatus.MANUAL
    assert rig.job(b, "smoke").status == JobStatus.CREATED
    assert rig.build(b).status == BuildStatus.MANUAL
    assert rig.finished == []  # manual is not final: no hooks, no deliverable


def test_delayed_job_is_dispatched_with_its_countdown(rig: Rig) -> None:
    b = rig.start(
        """
        later: {script: [x], when: delayed, start_in: 30 minutes}
        now: {script: [y]}
        """
    )
    calls = {rig.store.get_job(j).name: countdown for j, _, countdown in rig.dispatcher.calls}
    assert calls == {"later": 1800.0, "now": None}
    assert rig.job(b, "later").status == JobStatus.PENDING


def test_success_stores_the_deliverable_and_calls_hooks_once(rig: Rig) -> None:
    b = rig.start(STAGED)
    rig.run_all_pending(b)
    build = rig.build(b)
    assert build.status == BuildStatus.SUCCESS and build.finished_at is not None
    assert build.deliverable_digest is not None
    manifest = json.loads(rig.blobs.blobs[build.deliverable_digest])
    assert manifest["build"] == b and [j["name"] for j in manifest["jobs"]] == [
        "compile",
        "unit",
        "lint",
        "ship",
    ]
    (deliverable,) = rig.store.artifacts_of_build(b)
    assert (deliverable.kind, deliverable.job_id) == (ArtifactKind.DELIVERABLE, None)
    assert deliverable.digest == build.deliverable_digest
    # settling again (a duplicate completion, a recovery pass) changes nothing
    rig.coord.advance(b)
    rig.coord.recover()
    assert [x.id for x in rig.finished] == [b]
    assert rig.finished[0].deliverable_digest == build.deliverable_digest
    assert len(rig.store.artifacts_of_build(b)) == 1


def test_a_build_with_every_job_skipped_settles(rig: Rig) -> None:
    b = rig.start(
        """
        stages: [test, cleanup]
        t: {stage: test, script: [t], when: manual, allow_failure: true}
        c: {stage: cleanup, script: [c], when: on_failure}
        """
    )
    assert rig.statuses(b) == {"t": "manual", "c": "skipped"}
    assert rig.build(b).status == BuildStatus.SUCCESS


class _BrokenBlobs(FakeBlobs):
    def put_stream(
        self,
        chunks: Iterable[bytes],
        expected_digest: str | None = None,
        max_size: int | None = None,
    ) -> BlobInfo:
        raise RegistryError("blob store unavailable")


def test_a_failed_deliverable_write_can_be_completed_later(rig: Rig) -> None:
    b = rig.start("job: {script: [x]}")
    blobs, rig.coord.blobs = rig.coord.blobs, _BrokenBlobs()
    rig.claim(b, "job")
    with pytest.raises(RegistryError):
        rig.finish(b, "job")
    rig.coord.blobs = blobs  # the store is back; the worker reports again, recovery runs
    rig.finish(b, "job")
    rig.coord.recover()
    assert rig.build(b).deliverable_digest is not None
    assert len(rig.finished) == 1
