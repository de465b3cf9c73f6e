"""The dispatch outbox: no pending job is left without a message (coordinator/service.py).

(a) a publish that failed is re-sent by the watchdog pass, backing off while the broker
is down; (b) a broker restart re-sends the jobs it held; (c) a message lost otherwise is
re-sent once overdue, only while its queue is empty. No sleeping: the fake clock drives
the back-off and the fake store backdates messages.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from coordinator_kit import Rig

from farm.domain.clock import utcnow
from farm.domain.statuses import BuildStatus, JobStatus

TWO = """
stages: [build, test]
compile: {stage: build, script: [make]}
lint: {stage: build, script: [lint]}
unit: {stage: test, script: [make test]}
"""
WIDE = "job: {script: [x], parallel: 10}"


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path, probe=True, requeue_after=300, dispatch_retry_max=30)


def test_a_sent_message_is_recorded_with_the_broker_epoch(rig: Rig) -> None:
    b = rig.start(TWO)
    for name in ("compile", "lint"):
        queued = rig.store.outbox_of(rig.job(b, name).id)
        assert queued["queued_at"] is not None and queued["queued_epoch"] == "epoch-1"
    assert rig.store.outbox_of(rig.job(b, "unit").id).get("queued_at") is None  # created
    assert rig.coord.sweep() == 0  # nothing is missing
    assert rig.coord.recover() == 0  # nor after a restart, while the queue holds them


def test_jobs_that_could_not_be_queued_are_sent_once_the_broker_is_back(rig: Rig) -> None:
    rig.dispatcher.down = True
    b = rig.start(TWO)
    assert rig.with_status(b, JobStatus.PENDING) == ["compile", "lint"]
    assert rig.dispatcher.calls == [] and rig.dispatcher.failed == 1  # the first, not each
    assert rig.coord.sweep() == 0  # still down
    rig.dispatcher.down = False
    assert rig.coord.sweep() == 0  # backing off: not before the wait is over
    rig.clock.advance(30)
    assert rig.coord.sweep() == 2
    assert rig.dispatched(b) == ["compile", "lint"]
    assert rig.coord.sweep() == 0  # sent once
    rig.run_all_pending(b)
    assert rig.build(b).status == BuildStatus.SUCCESS  # no API restart needed


def test_a_down_broker_costs_one_failed_publish_per_back_off_step(tmp_path: Path) -> None:
    rig = Rig(tmp_path, dispatch_retry_max=4)  # a dispatcher that cannot probe its broker
    rig.dispatcher.down = True
    b = rig.start(WIDE)
    assert len(rig.with_status(b, JobStatus.PENDING)) == 10
    assert rig.dispatcher.failed == 1
    rig.start(WIDE)  # more jobs become ready meanwhile: they wait in the outbox
    assert rig.dispatcher.failed == 1
    tries = []
    for _ in range(12):  # 12 s of passes, one a second
        rig.clock.advance(1)
        rig.coord.watchdog()
        tries.append(rig.dispatcher.failed)
    # waits of 1, 2, 4, 4, ... seconds (capped by FARM_DISPATCH_RETRY_MAX)
    assert tries == [2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5]
    rig.dispatcher.down = False
    rig.clock.advance(4)
    rig.coord.watchdog()
    assert len(rig.dispatcher.calls) == 20


def test_a_broker_restart_re_sends_exactly_the_jobs_it_held(rig: Rig) -> None:
    b = rig.start(TWO)
    compile_ = rig.claim(b, "compile")  # its message was taken and claimed
    rig.dispatcher.restart()  # without persistence: lint's message is gone
    assert rig.coord.sweep() == 1
    assert rig.dispatcher.calls[-1] == (rig.job(b, "lint").id, 1, None)
    assert rig.store.outbox_of(rig.job(b, "lint").id)["queued_epoch"] == "epoch-2"
    assert rig.coord.sweep() == 0  # once
    # the running job and the duplicate of a claimed job change nothing
    assert rig.job(b, "compile").status == JobStatus.RUNNING
    assert rig.coord.claim(compile_.id, 1, "w2") is None


def test_a_lost_message_is_re_sent_once_overdue_and_only_from_an_empty_queue(rig: Rig) -> None:
    b = rig.start(TWO)
    # a worker took both messages and gave up its claims (the API was down): lost
    rig.dispatcher.take()
    assert rig.coord.sweep() == 0  # within FARM_REQUEUE_AFTER: it may still come
    for name in ("compile", "lint"):
        rig.store.backdate_queued(rig.job(b, name).id, 301)
    rig.dispatcher.queued["farm"] = 7  # a backlog: their messages may be waiting in it
    assert rig.coord.sweep() == 0
    rig.dispatcher.take()
    assert rig.coord.sweep() == 2
    assert rig.dispatched(b) == ["compile", "lint", "compile", "lint"]
    assert rig.coord.sweep() == 0  # the queue holds them now


def test_a_delayed_job_is_re_sent_with_the_delay_that_remains(rig: Rig) -> None:
    b = rig.start("later: {script: [x], when: delayed, start_in: 30 minutes}")
    job = rig.job(b, "later")
    assert rig.dispatcher.calls == [(job.id, 1, 1800.0)]
    due = rig.store.outbox_of(job.id)["due_at"]
    assert abs((due - utcnow()).total_seconds() - 1800) < 5
    rig.dispatcher.take()  # a worker holds it until it is due (an ETA message)
    rig.store.backdate_queued(job.id, 600)
    assert rig.coord.sweep() == 0  # not due yet: nothing is overdue
    rig.dispatcher.restart()
    assert rig.coord.sweep() == 1
    _, _, countdown = rig.dispatcher.calls[-1]
    assert countdown is not None and 1190 < countdown <= 1200  # 30 min - 10 min


def test_canceled_jobs_are_never_sent(rig: Rig) -> None:
    rig.dispatcher.down = True
    b = rig.start(WIDE)
    rig.coord.cancel(b)
    rig.dispatcher.down = False
    rig.clock.advance(60)
    rig.dispatcher.restart()
    assert rig.coord.sweep() == 0
    assert rig.coord.recover() == 0
    assert rig.dispatcher.calls == []


def test_messages_queued_before_a_cancel_are_refused(rig: Rig) -> None:
    b = rig.start(WIDE)
    sent = list(rig.dispatcher.calls)
    assert len(sent) == 10
    rig.coord.cancel(b)
    for job_id, attempt, _ in sent:  # workers take the queued messages after the cancel
        assert rig.coord.claim(job_id, attempt, "w1") is None
    assert {j.status for j in rig.build(b).jobs} == {JobStatus.CANCELED}


def test_a_retry_goes_through_the_outbox(rig: Rig) -> None:
    b = rig.start("x: {script: [x], retry: 1}")
    rig.claim(b, "x")
    rig.dispatcher.down = True
    rig.finish(b, "x", exit_code=1)
    job = rig.job(b, "x")
    assert (job.status, job.attempt) == (JobStatus.PENDING, 2)
    assert rig.store.outbox_of(job.id)["queued_at"] is None  # attempt 2 was never sent
    rig.dispatcher.down = False
    rig.clock.advance(30)
    assert rig.coord.sweep() == 1
    assert rig.dispatcher.calls[-1] == (job.id, 2, None)
    rig.run(b, "x")
    assert rig.build(b).status == BuildStatus.SUCCESS


def test_recover_without_a_probe_sends_every_pending_job_again(tmp_path: Path) -> None:
    rig = Rig(tmp_path)  # cannot know what the broker kept: as before the outbox
    b = rig.start(TWO)
    assert rig.coord.recover() == 2
    assert rig.dispatched(b) == ["compile", "lint"] * 2
    assert rig.coord.sweep() == 0  # but the periodic pass sends only what was never sent


def test_the_outbox_is_read_in_pages(rig: Rig) -> None:
    rig.dispatcher.down = True
    b = rig.start("job: {script: [x], parallel: 200}\nmore: {script: [y], parallel: 200}")
    b2 = rig.start("job: {script: [x], parallel: 200}\nmore: {script: [y], parallel: 200}")
    rig.dispatcher.down = False
    rig.clock.advance(30)
    assert rig.coord.sweep() == 800
    assert rig.store.calls["outbox"] == 2  # 500 a page
    assert len(set(rig.dispatched(b))) == len(set(rig.dispatched(b2))) == 400
    assert rig.coord.sweep() == 0


def test_queued_at_is_kept_only_for_the_attempt_that_was_sent(rig: Rig) -> None:
    b = rig.start("x: {script: [x]}")
    job = rig.claim(b, "x")
    rig.store.backdate_heartbeat(job.id, 3600)
    rig.dispatcher.down = True
    assert rig.coord.watchdog() == [job.id]  # lost worker: attempt 2, not sent
    assert rig.store.outbox_of(job.id)["queued_at"] is None
    # a late mark for attempt 1 does not mark attempt 2 as sent
    rig.store.mark_queued([(job.id, 1)], utcnow() - timedelta(seconds=1), "epoch-1")
    assert rig.store.outbox_of(job.id)["queued_at"] is None
