"""The worker's side of the messages: log chunks fit a LogRequest, reports fit a FinishReport."""

from __future__ import annotations

import time
from typing import Any, cast

from farm.domain.messages import (
    MAX_LOG_CHUNK,
    MAX_MESSAGE,
    PROTOCOL_VERSION,
    ArtifactReport,
    LogReply,
    LogRequest,
)
from farm.executor.base import RunResult
from farm.worker.api_client import CoordinatorClient
from farm.worker.logstream import LogStream
from farm.worker.runner import _Outcome, _report


class FakeClient:
    """Records log requests; answers ``accepted`` until ``room`` characters were sent."""

    def __init__(self, room: int = 10**9) -> None:
        self.sent: list[str] = []
        self.room = room

    def log(
        self,
        job_id: int,
        attempt: int,
        text: str,
        offset: int | None = None,
        job_token: str = "",
    ) -> LogReply:
        LogRequest(attempt=attempt, data=text, offset=offset)  # what the real client sends
        self.sent.append(text)
        self.room -= len(text)
        return LogReply(continue_=True, accepted=self.room > 0)


def stream(client: FakeClient) -> LogStream:
    return LogStream(cast(CoordinatorClient, client), 1, 1, interval=3600)


def test_a_burst_bigger_than_one_request_goes_out_in_order_in_pieces() -> None:
    client = FakeClient()
    logs = stream(client)
    burst = "a" * MAX_LOG_CHUNK + "b" * 10
    logs.write(burst.encode())
    logs._flush()  # what the flusher thread does every interval
    logs.close()
    data = [c for c in client.sent if c]
    assert [len(c) for c in data] == [MAX_LOG_CHUNK, 10]
    assert "".join(data) == burst and not logs.canceled()


def test_a_full_log_stops_the_pieces_and_later_output() -> None:
    client = FakeClient(room=MAX_LOG_CHUNK)
    # A heartbeat on every flush: what goes out once the log is full is visible at once.
    logs = LogStream(cast(CoordinatorClient, client), 1, 1, interval=3600, heartbeat=0)
    logs.write(b"x" * (3 * MAX_LOG_CHUNK))
    logs._flush()
    assert [len(c) for c in client.sent] == [MAX_LOG_CHUNK]
    logs.write(b"more")
    logs._flush()
    logs.close()
    assert client.sent[1:] == [""]  # heartbeats only, once the API said the log is full
    assert not logs.spool.pending()  # nothing left for the finish report to carry


def test_report_is_a_finish_report_with_the_message_cut_to_fit() -> None:
    art = ArtifactReport(name="out", digest="sha256:" + "0" * 64, size=3, files=["a"])
    long = RunResult(exit_code=None, reason="executor_error", message="m" * (MAX_MESSAGE + 5))
    report = _report(2, _Outcome(long, [art], coverage=float("inf")), "farm_job")
    assert report.attempt == 2 and report.reason == "executor_error"
    assert len(report.message) == MAX_MESSAGE and report.message.endswith("(truncated)")
    assert report.artifacts == [art] and report.coverage is None
    wire: dict[str, Any] = report.model_dump(mode="json")
    assert wire["protocol"] == PROTOCOL_VERSION and wire["exit_code"] is None
    assert wire["job_token"] == "farm_job"  # the claim's token goes back with the report
    ok = _report(1, _Outcome(RunResult(exit_code=0, reason=None), [], coverage=87.5))
    assert (ok.exit_code, ok.reason, ok.message, ok.coverage) == (0, None, "", 87.5)


def test_a_log_request_may_say_where_its_chunk_starts_and_old_bodies_still_parse() -> None:
    old = LogRequest.model_validate({"attempt": 1, "data": "x"})  # a worker before offsets
    assert old.offset is None
    new = LogRequest(attempt=1, data="y", offset=41)
    assert new.model_dump(mode="json") == {
        "protocol": PROTOCOL_VERSION,
        "attempt": 1,
        "job_token": "",
        "data": "y",
        "offset": 41,
    }


def test_a_short_attempt_starts_no_flusher_and_a_long_one_flushes_on_its_own() -> None:
    client = FakeClient()
    with LogStream(cast(CoordinatorClient, client), 1, 1, interval=0.05) as short:
        short.write(b"quick\n")
    assert short._thread.ident is None  # ended before its first flush was due
    assert client.sent == [] and [r.text for r in short.spool.pending()] == ["quick\n"]
    with LogStream(cast(CoordinatorClient, client), 1, 1, interval=0.05) as long:
        long.write(b"slow\n")
        deadline = time.monotonic() + 5
        while not client.sent and time.monotonic() < deadline:
            time.sleep(0.01)
    assert long._thread.ident is not None and not long._thread.is_alive()
    assert client.sent == ["slow\n"]
