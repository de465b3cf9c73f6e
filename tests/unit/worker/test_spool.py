"""The report spool: durable, ordered, re-sent until the API takes it (issue 16, item 5)."""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path
from typing import cast

import pytest

from farm.domain.messages import (
    MAX_FINISH_LOG,
    FinishReply,
    FinishReport,
    LogReply,
    LogRequest,
)
from farm.errors import InvalidRequest, ServiceUnavailable
from farm.worker.api_client import CoordinatorClient
from farm.worker.logstream import LogStream
from farm.worker.spool import (
    FinishRecord,
    LogRecord,
    Spool,
    SpoolBusy,
    deliver,
    resend_leftovers,
    send_pending,
    spool_name,
)


class FlakyAPI:
    """A coordinator that is down while ``down`` is set; records what it took, in order."""

    def __init__(self) -> None:
        self.down = False
        self.logs: list[tuple[str, int | None]] = []
        self.finishes: list[FinishReport] = []
        self.accept = True
        self.attempt = 1  # the job's current attempt
        self.refuse_finish = False

    def log(
        self,
        job_id: int,
        attempt: int,
        text: str,
        offset: int | None = None,
        job_token: str = "",
    ) -> LogReply:
        LogRequest(attempt=attempt, data=text, offset=offset)
        if self.down:
            raise ServiceUnavailable("cannot reach the farm API (ConnectError)")
        if text:
            self.logs.append((text, offset))
        return LogReply(continue_=attempt == self.attempt, accepted=self.accept)

    def finish(self, job_id: int, report: FinishReport) -> FinishReply:
        if self.down:
            raise ServiceUnavailable("cannot reach the farm API (ConnectError)")
        if self.refuse_finish:
            raise InvalidRequest("no")
        self.finishes.append(report)
        if report.log is not None:  # the API stores the tail first, as a log request
            self.logs.append((report.log.data, report.log.offset))
        status = "success" if report.attempt == self.attempt else "running"
        return FinishReply.model_validate({"status": status, "attempt": self.attempt})

    @property
    def text(self) -> str:
        return "".join(t for t, _ in self.logs)


def client(api: FlakyAPI) -> CoordinatorClient:
    return cast(CoordinatorClient, api)


def test_records_are_durable_and_survive_the_process(tmp_path: Path) -> None:
    spool = Spool.create(tmp_path, 7, 2)
    spool.add_logs(["héllo\n", "", "world\n"])
    spool.ack()
    spool.add_finish(FinishReport(attempt=2, exit_code=0))
    spool.close()
    path = tmp_path / spool_name(7, 2)
    with path.open("ab") as fh:  # a crash in the middle of a write leaves a torn line
        fh.write(b'{"log": "tor')
    again = Spool.adopt(path)
    assert again is not None
    assert (again.job_id, again.attempt) == (7, 2)
    assert again.pending() == [
        LogRecord("world\n", len("héllo\n".encode())),
        FinishRecord(FinishReport(attempt=2, exit_code=0)),
    ]
    assert again.finished and again.log_bytes == len("héllo\nworld\n".encode())
    again.close()
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_a_live_spool_is_locked_against_other_senders(tmp_path: Path) -> None:
    live = Spool.create(tmp_path, 1, 1)
    assert Spool.adopt(tmp_path / spool_name(1, 1)) is None
    with pytest.raises(SpoolBusy):
        Spool.create(tmp_path, 1, 1)
    live.close()
    adopted = Spool.adopt(tmp_path / spool_name(1, 1))
    assert adopted is not None
    adopted.close()


def test_pending_records_go_out_in_order_once_the_api_is_back(tmp_path: Path) -> None:
    api = FlakyAPI()
    spool = Spool.create(tmp_path, 3, 1)
    spool.add_logs(["a\n"])
    assert send_pending(spool, client(api)).error is None
    api.down = True
    spool.add_logs(["b\n"])
    spool.add_logs(["c\n"])
    spool.add_finish(FinishReport(attempt=1, exit_code=0))
    progress = send_pending(spool, client(api))
    assert isinstance(progress.error, ServiceUnavailable) and not progress.done
    assert len(spool.pending()) == 3
    api.down = False
    progress = send_pending(spool, client(api))
    assert progress.done and progress.finish is not None and progress.finish.status == "success"
    # the last output rides with the report: one request, the offset of its first chunk
    assert api.logs == [("a\n", 0), ("b\nc\n", 2)]
    assert [f.exit_code for f in api.finishes] == [0]
    spool.close()


def test_output_too_big_to_ride_with_the_report_goes_first_in_a_log_request() -> None:
    api = FlakyAPI()
    spool = Spool.memory(3, 1)
    spool.add_logs(["a" * MAX_FINISH_LOG, "b\n"])
    spool.add_finish(FinishReport(attempt=1, exit_code=0))
    assert send_pending(spool, client(api)).done and not spool.pending()
    assert api.logs == [("a" * MAX_FINISH_LOG, 0), ("b\n", MAX_FINISH_LOG)]
    tail = api.finishes[0].log  # what is left after that request still rides
    assert tail is not None and tail.data == "b\n"


def test_a_report_with_no_output_left_carries_none() -> None:
    api = FlakyAPI()
    spool = Spool.memory(3, 1)
    spool.add_logs(["sent\n"])
    send_pending(spool, client(api))
    spool.add_finish(FinishReport(attempt=1, exit_code=0))
    assert send_pending(spool, client(api)).done
    assert api.logs == [("sent\n", 0)] and api.finishes[0].log is None


def test_a_log_the_api_refuses_drops_the_rest_of_the_output_not_the_result(
    tmp_path: Path,
) -> None:
    api = FlakyAPI()
    api.accept = False  # the log is full
    spool = Spool.memory(3, 1)
    spool.add_logs(["a" * MAX_FINISH_LOG, "b", "c"])  # too big to ride with the report
    spool.add_finish(FinishReport(attempt=1, exit_code=1))
    progress = send_pending(spool, client(api))
    assert progress.done and api.text == "a" * MAX_FINISH_LOG and len(api.finishes) == 1


def test_a_stale_report_is_answered_and_done(tmp_path: Path) -> None:
    api = FlakyAPI()
    api.attempt = 2  # the coordinator moved on
    spool = Spool.memory(3, 1)
    spool.add_finish(FinishReport(attempt=1, exit_code=0))
    progress = send_pending(spool, client(api))
    assert progress.done and progress.finish is not None and progress.finish.attempt == 2


def test_a_report_refused_for_good_is_dropped_not_retried(tmp_path: Path) -> None:
    api = FlakyAPI()
    api.refuse_finish = True
    spool = Spool.memory(3, 1)
    spool.add_finish(FinishReport(attempt=1, exit_code=0))
    assert send_pending(spool, client(api)).done and not spool.pending()


def test_deliver_waits_out_an_outage_then_removes_the_file(tmp_path: Path) -> None:
    api = FlakyAPI()
    api.down = True
    spool = Spool.create(tmp_path, 4, 1)
    spool.add_logs(["during the outage\n"])
    spool.add_finish(FinishReport(attempt=1, exit_code=0))
    timer = threading.Timer(1.2, lambda: setattr(api, "down", False))
    timer.start()
    try:
        assert deliver(spool, client(api), patience=30) == "delivered"
    finally:
        timer.cancel()
    assert api.text == "during the outage\n" and len(api.finishes) == 1
    assert not (tmp_path / spool_name(4, 1)).exists()


def test_deliver_gives_up_after_its_patience_or_leaves_the_file_on_shutdown(
    tmp_path: Path,
) -> None:
    api = FlakyAPI()
    api.down = True
    spool = Spool.create(tmp_path, 5, 1)
    spool.add_finish(FinishReport(attempt=1, exit_code=0))
    stopping = threading.Event()
    stopping.set()
    assert deliver(spool, client(api), patience=60, stopping=stopping) == "spooled"
    assert (tmp_path / spool_name(5, 1)).exists()
    again = Spool.adopt(tmp_path / spool_name(5, 1))
    assert again is not None
    assert deliver(again, client(api), patience=0.3) == "given up"
    assert not (tmp_path / spool_name(5, 1)).exists()


def test_leftovers_are_sent_at_start_unless_a_live_attempt_holds_them(tmp_path: Path) -> None:
    api = FlakyAPI()
    left = Spool.create(tmp_path, 6, 1)  # its worker stopped with the report unsent
    left.add_logs(["last words\n"])
    left.add_finish(FinishReport(attempt=1, exit_code=0))
    left.close()
    crashed = Spool.create(tmp_path, 8, 1)  # its worker died mid-job: output only
    crashed.add_logs(["before the crash\n"])
    crashed.close()
    live = Spool.create(tmp_path, 9, 1)  # a running attempt's
    live.add_logs(["running\n"])
    api.down = True
    assert resend_leftovers(tmp_path, client(api), patience=60) == 2
    api.down = False
    assert resend_leftovers(tmp_path, client(api), patience=60) == 0
    assert sorted(t for t, _ in api.logs) == ["before the crash\n", "last words\n"]
    assert [f.attempt for f in api.finishes] == [1]
    assert sorted(p.name for p in tmp_path.iterdir()) == [spool_name(9, 1)]
    live.close()


def test_leftovers_nobody_could_deliver_for_too_long_are_dropped(tmp_path: Path) -> None:
    old = Spool.create(tmp_path, 10, 1)
    old.add_finish(FinishReport(attempt=1, exit_code=0))
    old.close()
    path = tmp_path / spool_name(10, 1)
    os.utime(path, (1, 1))
    api = FlakyAPI()
    api.down = True
    assert resend_leftovers(tmp_path, client(api), patience=60) == 0
    assert not path.exists()


def test_the_log_stream_spools_output_while_the_api_is_down(tmp_path: Path) -> None:
    api = FlakyAPI()
    spool = Spool.create(tmp_path, 11, 1)
    logs = LogStream(client(api), 11, 1, interval=3600, spool=spool)
    logs.write(b"one\n")
    logs._flush()
    api.down = True
    logs.write(b"two\n")
    logs._flush()
    logs.write(b"three\n")
    logs.close()
    assert api.text == "one\n" and not logs.canceled()
    # the lines the API did not take are on disk, in order, for the finish delivery
    spool.close()
    fd = os.open(tmp_path / spool_name(11, 1), os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody holds it any more
    os.close(fd)
    again = Spool.adopt(tmp_path / spool_name(11, 1))
    assert again is not None
    assert [r.text for r in again.pending() if isinstance(r, LogRecord)] == ["two\n", "three\n"]
    api.down = False
    assert deliver(again, client(api), patience=5) == "delivered"
    assert api.text == "one\ntwo\nthree\n"


def test_the_log_stream_spools_no_more_than_the_log_cap(tmp_path: Path) -> None:
    api = FlakyAPI()
    api.down = True
    logs = LogStream(client(api), 12, 1, interval=3600, cap=10)
    logs.write(b"0123456789abcdef")
    logs._flush()
    logs.write(b"more")
    logs.close()
    assert logs.spool.log_bytes == 11  # one byte over: the coordinator adds its marker


def test_the_last_output_spooled_unsynced_is_on_disk_with_the_report(tmp_path: Path) -> None:
    """The log stream spools its tail without an fsync of its own: the finish report's
    fsync covers it, and a spool read back from disk holds both, in order."""
    spool = Spool.create(tmp_path, 12, 1, job_token="t0k")
    spool.add_logs(["tail\n"], durable=False)
    spool.add_finish(FinishReport(attempt=1, exit_code=0))
    spool.close()
    again = Spool.adopt(tmp_path / spool_name(12, 1))
    assert again is not None and again.job_token == "t0k"
    pending = again.pending()
    assert isinstance(pending[0], LogRecord) and pending[0].text == "tail\n"
    assert isinstance(pending[1], FinishRecord)
    again.close()
