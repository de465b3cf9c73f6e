"""An attempt's log and result on the worker's disk until the coordinator has taken them.

Everything the coordinator must hear about an attempt goes through its spool first:
each log chunk and, at the end, the finish report are appended to
``$FARM_WORK_DIR/spool/job-<id>-<attempt>.jsonl`` and fsynced, and only then sent,
oldest first. A record leaves the queue only when the API took it; while the API is
down (connection refused, a timeout, a 5xx) the records wait on disk and are tried
again, in order, so a log is delivered whole and in order once the API is back and a
result is never lost to an outage (issue 16, item 5).

One file per attempt, append-only JSON lines::

    {"token": "<job token>"}           first: the attempt's credential from its claim
    {"log": "<text>", "offset": 1234}   a chunk; offset = UTF-8 bytes of output before it
    {"finish": {...}}                   the FinishReport, as on the wire
    {"ack": 3}                          the first 3 records were delivered (not fsynced:
                                        a lost ack only means a resend, which ``offset``
                                        lets the API recognise)

The attempt's process holds an exclusive ``flock`` on its file while it runs and
delivers. A file nobody holds is a *leftover* (its worker died, was stopped, or ran
out of patience): :func:`resend_leftovers` adopts it at worker start and then every
few seconds, sends what is left and removes it.

When is a record given up? When the API answers it for good: a log chunk the API
refuses (the log is full, or the attempt is no longer the job's) is dropped and so are
the chunks after it; a finish report is done once the API answers it at all — a stale
attempt's report is answered with the job's current state and changes nothing (the
coordinator decides staleness, not the worker). While the API does not answer, the
worker keeps trying for ``FARM_SPOOL_PATIENCE`` seconds: the coordinator counts a
running attempt's lease from its own start after an outage, so a report that reaches
it after the outage is either taken or answered as stale, and giving up earlier (the
old ~6 s) is what lost results.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from farm.domain.messages import MAX_FINISH_LOG, FinishReply, FinishReport, LogReply, LogTail
from farm.errors import FarmError, ServiceUnavailable
from farm.http import worth_retrying
from farm.worker.api_client import CoordinatorClient

log = logging.getLogger("farm.worker")

_NAME = re.compile(r"^job-(\d+)-(\d+)\.jsonl$")
BACKOFF_FIRST = 0.5  # seconds before the first retry after a failed send
BACKOFF_MAX = 3.0  # seconds between retries at most (a refused connection is cheap)


@dataclass(frozen=True)
class LogRecord:
    """A chunk of the attempt's output (already masked)."""

    text: str
    offset: int  # UTF-8 bytes of output before this chunk


@dataclass(frozen=True)
class FinishRecord:
    """The attempt's finish report."""

    report: FinishReport


Record = LogRecord | FinishRecord


def spool_name(job_id: int, attempt: int) -> str:
    """The file name of an attempt's spool."""
    return f"job-{job_id}-{attempt}.jsonl"


class SpoolBusy(FarmError):
    """Another process holds this attempt's spool."""


class Spool:
    """One attempt's spooled reports: a durable FIFO with an in-memory view.

    Made by :meth:`create` (a live attempt), :meth:`adopt` (a leftover) or
    :meth:`memory` (no file: tests, or a worker without a work dir). Not thread-safe
    by itself: :class:`~farm.worker.logstream.LogStream` serialises its calls.
    """

    def __init__(
        self,
        job_id: int,
        attempt: int,
        path: Path | None = None,
        fd: int | None = None,
        records: list[Record] | None = None,
        acked: int = 0,
        job_token: str = "",
    ) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.job_token = job_token  # sent with every record: the API checks it
        self.path = path
        self._fd = fd
        self._records: list[Record] = records or []
        self._acked = acked
        self._log_bytes = sum(
            len(r.text.encode()) for r in self._records if isinstance(r, LogRecord)
        )
        self._unsynced_dir: Path | None = None  # whose entry of the file is not durable yet

    # --- opening ---------------------------------------------------------------------

    @classmethod
    def memory(cls, job_id: int, attempt: int, job_token: str = "") -> Spool:
        """A spool that keeps its records in memory only."""
        return cls(job_id, attempt, job_token=job_token)

    @classmethod
    def create(cls, directory: Path, job_id: int, attempt: int, job_token: str = "") -> Spool:
        """The spool of a live attempt, locked by this process (records already there kept).

        Raises :class:`SpoolBusy` when another process holds it.
        """
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = directory / spool_name(job_id, attempt)
        for _ in range(5):
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise SpoolBusy(f"the spool of job {job_id} attempt {attempt} is in use") from None
            # A leftover sender may have removed the (empty) file between our open and
            # our lock: then we hold a lock on an unlinked inode; start over.
            if _same_file(fd, path):
                records, acked, token = _read(path)
                spool = cls(job_id, attempt, path, fd, records, acked, token or job_token)
                # Made durable by the first durable record, with the directory entry: a
                # spool is only read back for what it was to send, and nothing is sent
                # before it is durable (one fsync fewer per job).
                spool._unsynced_dir = directory
                if job_token and token != job_token:
                    spool._write([{"token": job_token}], durable=False)
                    spool.job_token = job_token
                return spool
            os.close(fd)
        raise FarmError(f"could not create the spool file {path}")

    @classmethod
    def adopt(cls, path: Path) -> Spool | None:
        """A leftover spool, locked by this process; None if it is live or gone."""
        match = _NAME.match(path.name)
        if match is None:
            return None
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        if not _same_file(fd, path):  # delivered and removed by its owner meanwhile
            os.close(fd)
            return None
        records, acked, token = _read(path)
        return cls(int(match[1]), int(match[2]), path, fd, records, acked, token)

    # --- writing ---------------------------------------------------------------------

    def add_logs(self, chunks: list[str], durable: bool = True) -> None:
        """Append output chunks (in order) and make them durable with one fsync.

        ``durable=False``: the caller makes them durable with the next durable record
        before anything is sent (the log's tail, spooled just before the finish report).
        """
        lines = []
        for text in chunks:
            if not text:
                continue
            record = LogRecord(text, self._log_bytes)
            self._log_bytes += len(text.encode())
            self._records.append(record)
            lines.append({"log": record.text, "offset": record.offset})
        self._write(lines, durable=durable)

    def add_finish(self, report: FinishReport) -> None:
        """Append the finish report and make it durable."""
        self._records.append(FinishRecord(report))
        self._write([{"finish": report.model_dump(mode="json")}], durable=True)

    def ack(self, count: int = 1) -> None:
        """The next ``count`` pending records were delivered (or given up)."""
        self._acked = min(self._acked + count, len(self._records))
        self._write([{"ack": self._acked}], durable=False)

    def _write(self, lines: list[dict[str, object]], durable: bool) -> None:
        if self._fd is None or not lines:
            return
        data = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
        os.write(self._fd, data.encode())
        if durable:
            os.fdatasync(self._fd)  # every line written before this one too
            if self._unsynced_dir is not None:
                _fsync_dir(self._unsynced_dir)
                self._unsynced_dir = None

    # --- reading ---------------------------------------------------------------------

    @property
    def log_bytes(self) -> int:
        """UTF-8 bytes of output spooled so far."""
        return self._log_bytes

    def pending(self) -> list[Record]:
        """The records not delivered yet, oldest first."""
        return self._records[self._acked :]

    @property
    def finished(self) -> bool:
        """Whether the finish report is in the spool."""
        return any(isinstance(r, FinishRecord) for r in self._records)

    def age(self) -> float:
        """Seconds since the spool file last changed (0 for a memory spool)."""
        if self.path is None:
            return 0.0
        try:
            return max(0.0, time.time() - self.path.stat().st_mtime)
        except FileNotFoundError:
            return 0.0

    # --- ending ----------------------------------------------------------------------

    def remove(self) -> None:
        """Delete the file (while still holding its lock) and close it."""
        if self.path is not None and self._fd is not None:
            self.path.unlink(missing_ok=True)
        self.close()

    def close(self) -> None:
        """Release the lock and the file; the records stay on disk for a later sender."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Spool:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.path or "memory"
        return f"Spool(job {self.job_id} attempt {self.attempt} at {where})"


# --- sending -------------------------------------------------------------------------


@dataclass
class Progress:
    """What one :func:`send_pending` pass achieved."""

    done: bool = False  # the finish report was answered (or given up for good)
    reply: LogReply | None = None  # the last answer to a log chunk or heartbeat
    finish: FinishReply | None = None
    error: BaseException | None = None  # the transient failure that stopped the pass


def transient(exc: BaseException) -> bool:
    """Whether a failed send is worth trying again later (the API is down or failing)."""
    if isinstance(exc, ServiceUnavailable):
        return True
    return isinstance(exc, FarmError) and worth_retrying(exc)


def send_pending(spool: Spool, client: CoordinatorClient) -> Progress:
    """Send the spool's pending records in order until one fails transiently.

    A log chunk the API refuses (``accepted: false``: the log is full or the attempt was
    replaced) ends the sending of output: the chunks after it are dropped. A record the
    API rejects for good (a 4xx) is dropped with a warning; for the finish report that
    means the attempt is left to the coordinator's lease.
    """
    progress = Progress()
    while pending := spool.pending():
        record = pending[0]
        tail = _tail(pending)
        try:
            if tail is not None:  # the last output rides with the finish report
                report, count = tail
                progress.finish = client.finish(spool.job_id, report)
                spool.ack(count)
                progress.done = True
                _note_stale(spool, progress.finish)
            elif isinstance(record, LogRecord):
                reply = client.log(
                    spool.job_id, spool.attempt, record.text, record.offset, spool.job_token
                )
                progress.reply = reply
                spool.ack()
                if not reply.accepted:
                    _drop_logs(spool)
            else:
                progress.finish = client.finish(spool.job_id, record.report)
                spool.ack()
                progress.done = True
                _note_stale(spool, progress.finish)
        except Exception as exc:
            if transient(exc):
                progress.error = exc
                return progress
            what = (
                "log chunk" if tail is None and isinstance(record, LogRecord) else "finish report"
            )
            log.warning(
                "job %s attempt %s: the API refused the %s for good, dropped: %s",
                spool.job_id,
                spool.attempt,
                what,
                exc,
            )
            spool.ack(tail[1] if tail is not None else 1)
            progress.done = tail is not None or isinstance(record, FinishRecord)
        if progress.done:
            return progress
    return progress


def _tail(pending: list[Record]) -> tuple[FinishReport, int] | None:
    """When what is pending is the last of the output and then the finish report, the
    report carrying that output, and how many records it stands for; else None.

    A short job's output then costs no request of its own. Output over
    :data:`MAX_FINISH_LOG`, or chunks that do not follow one another, go as log
    requests first.
    """
    last = pending[-1]
    if not isinstance(last, FinishRecord) or last.report.log is not None:
        return None
    chunks = pending[:-1]
    if not chunks:
        return None
    texts: list[str] = []
    size = 0
    expect = None
    for chunk in chunks:
        if not isinstance(chunk, LogRecord) or (expect is not None and chunk.offset != expect):
            return None
        size += len(chunk.text)
        if size > MAX_FINISH_LOG:
            return None
        texts.append(chunk.text)
        expect = chunk.offset + len(chunk.text.encode())
    first = chunks[0]
    assert isinstance(first, LogRecord)
    tail = LogTail(data="".join(texts), offset=first.offset)
    return last.report.model_copy(update={"log": tail}), len(pending)


def _drop_logs(spool: Spool) -> None:
    """Give up the pending log chunks (the API takes no more output of the attempt)."""
    count = 0
    for record in spool.pending():
        if not isinstance(record, LogRecord):
            break
        count += 1
    if count:
        spool.ack(count)


def _note_stale(spool: Spool, reply: FinishReply) -> None:
    if reply.attempt != spool.attempt:
        log.info(
            "job %s attempt %s: the report came too late, the job is at attempt %s (%s)",
            spool.job_id,
            spool.attempt,
            reply.attempt,
            reply.status,
        )


def deliver(
    spool: Spool,
    client: CoordinatorClient,
    patience: float,
    stopping: threading.Event | None = None,
) -> str:
    """Send everything the spool holds, retrying while the API does not answer.

    Returns ``"delivered"`` (the finish report was answered; the file is removed),
    ``"given up"`` (``patience`` seconds without success; removed with an error
    line), or ``"spooled"`` when ``stopping`` was set (the worker is shutting down:
    the file stays for the next start). A spool without a finish report is delivered
    once its log chunks are.
    """
    deadline = time.monotonic() + patience
    wait = BACKOFF_FIRST
    failing_since: float | None = None
    while True:
        progress = send_pending(spool, client)
        if progress.done or (progress.error is None and not spool.pending()):
            if failing_since is not None:
                log.warning(
                    "job %s attempt %s: reports delivered after %.0f s of retrying",
                    spool.job_id,
                    spool.attempt,
                    time.monotonic() - failing_since,
                )
            spool.remove()
            return "delivered"
        if failing_since is None:
            failing_since = time.monotonic()
            log.warning(
                "job %s attempt %s: cannot report (%s); spooled in %s, retrying for up to %g s",
                spool.job_id,
                spool.attempt,
                progress.error,
                spool.path or "memory",
                patience,
            )
        if time.monotonic() >= deadline:
            log.error(
                "job %s attempt %s: gave up reporting after %g s: %s",
                spool.job_id,
                spool.attempt,
                patience,
                progress.error,
            )
            spool.remove()
            return "given up"
        pause = min(wait, max(0.0, deadline - time.monotonic()))
        if stopping is not None and stopping.wait(pause):
            spool.close()
            return "spooled"
        if stopping is None:
            time.sleep(pause)
        wait = min(wait * 2, BACKOFF_MAX)


def resend_leftovers(directory: Path, client: CoordinatorClient, patience: float) -> int:
    """One pass over the spools nobody holds: send what is left, remove what is done.

    A leftover without a finish report is an attempt whose worker died mid-job: its
    output is delivered (the last lines before a crash are worth having) and the file
    removed; the coordinator's lease decides the attempt. One untouched for longer than
    ``patience`` seconds is dropped. Returns how many leftovers are still waiting.
    """
    if not directory.is_dir():
        return 0
    waiting = 0
    for path in sorted(directory.glob("job-*.jsonl")):
        spool = Spool.adopt(path)
        if spool is None:
            continue
        try:
            if spool.age() > patience:
                log.error("dropping %r: nothing could be delivered for %g s", spool, patience)
                spool.remove()
                continue
            progress = send_pending(spool, client)
            if progress.done or (progress.error is None and not spool.pending()):
                log.info("delivered the leftover reports of %r", spool)
                spool.remove()
            else:
                waiting += 1
        finally:
            spool.close()
    return waiting


def _read(path: Path) -> tuple[list[Record], int, str]:
    """The records, the ack count and the job token of a spool file (torn last line ignored)."""
    records: list[Record] = []
    acked = 0
    token = ""
    with path.open("rb") as fh:
        for raw in fh:
            try:
                line = json.loads(raw)
                if "log" in line:
                    records.append(LogRecord(str(line["log"]), int(line["offset"])))
                elif "finish" in line:
                    records.append(FinishRecord(FinishReport.model_validate(line["finish"])))
                elif "ack" in line:
                    acked = max(acked, int(line["ack"]))
                elif "token" in line:
                    token = str(line["token"])
            except (ValueError, KeyError, TypeError):
                log.warning("skipping an unreadable line of %s", path)
    return records, min(acked, len(records)), token


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (own.st_dev, own.st_ino) == (st.st_dev, st.st_ino)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
