"""Streams a job's output to the coordinator while it runs, and hears about cancels.

Output is batched (a few hundred ms) so a chatty job costs few requests. Each batch
is first appended to the attempt's :class:`~farm.worker.spool.Spool` (on disk,
fsynced), then the spool's pending chunks are sent oldest first; a chunk leaves the
spool only once the API took it. So an API that is down for a while delays the log
but loses none of it, and delivers it in order when it is back. Every request doubles
as the attempt's heartbeat (an empty one every ``heartbeat`` seconds when there is no
output), and the answer tells us whether the attempt should go on (it was canceled
or handed to another worker otherwise).
"""

from __future__ import annotations

import codecs
import logging
import threading
import time
from types import TracebackType

from farm.domain.messages import MAX_LOG_CHUNK, LogReply
from farm.worker.api_client import CoordinatorClient
from farm.worker.masking import Masker
from farm.worker.spool import BACKOFF_FIRST, BACKOFF_MAX, Spool, send_pending
from farm.worker.ticker import Timer, ticker

log = logging.getLogger("farm.worker")


class LogStream:
    """A background flusher for one attempt's output; ``canceled()`` polls its verdict.

    ``cap``: bytes of output spooled at most (the coordinator's ``FARM_LOG_MAX_BYTES``;
    a little more is sent so the coordinator sees the overflow and adds its marker);
    None: no cap on the worker's side.
    """

    def __init__(
        self,
        client: CoordinatorClient,
        job_id: int,
        attempt: int,
        interval: float = 0.3,
        heartbeat: float = 2.0,
        masks: list[str] | None = None,
        spool: Spool | None = None,
        cap: int | None = None,
    ) -> None:
        self._client = client
        self._job = job_id
        self._attempt = attempt
        self._interval = interval
        self._heartbeat = heartbeat
        self._spool = spool if spool is not None else Spool.memory(job_id, attempt)
        self._cap = cap
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buf: list[str] = []
        self._masker = Masker(masks or ())
        self._lock = threading.Lock()  # guards _buf
        self._send_lock = threading.Lock()  # guards the spool and the sending state
        self._stop = threading.Event()
        self._go_on = True
        self._full = False
        self._last_sent = 0.0  # monotonic time of the last answered request
        self._retry_at = 0.0  # monotonic time before which no send is tried
        self._backoff = BACKOFF_FIRST
        self._failing = False
        self._thread = threading.Thread(target=self._loop, name=f"log-{job_id}", daemon=True)
        self._starting = threading.Lock()  # the flusher starts once, never after close
        self._starter: Timer | None = None

    def __enter__(self) -> LogStream:
        # Most short jobs end before their first flush is due: their output rides with
        # the finish report, so they need no flusher thread of their own at all.
        self._starter = ticker.after(self._interval, self._start)
        return self

    def _start(self) -> None:
        with self._starting:
            if not self._stop.is_set():
                self._thread.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def spool(self) -> Spool:
        """The attempt's spool (the runner adds the finish report to it)."""
        return self._spool

    def write(self, data: bytes) -> None:
        """Output bytes from the container (any chunking; UTF-8 is decoded incrementally)."""
        text = self._decoder.decode(data)
        if text:
            with self._lock:
                self._buf.append(self._masker.feed(text))

    def system(self, message: str) -> None:
        """A line from farm itself, shown in the job log."""
        with self._lock:
            self._buf.append(self._masker.flush())
            self._buf.append(f"\x1b[36;1m[farm] {message}\x1b[0m\n")

    def canceled(self) -> bool:
        """True once the coordinator said this attempt must stop."""
        return not self._go_on

    def _spool_buffer(self, durable: bool = True) -> None:
        """Move the buffered output into the spool (durably unless told), in request-sized
        chunks."""
        with self._lock:
            text = "".join(self._buf)
            self._buf.clear()
        if not text or self._full:
            return  # once the coordinator said the log is full, output is dropped
        if self._cap is not None:
            room = self._cap + 1 - self._spool.log_bytes
            if room <= 0:
                return  # the coordinator keeps no more than its cap: neither do we
            if len(text.encode()) > room:
                text = text.encode()[:room].decode(errors="ignore")
        # A burst larger than one request may carry goes out in several, in order.
        chunks = [text[i : i + MAX_LOG_CHUNK] for i in range(0, len(text), MAX_LOG_CHUNK)]
        self._spool.add_logs(chunks, durable=durable)

    def _flush(self) -> None:
        """Spool the buffer, then send what is pending (or a heartbeat when it is due)."""
        with self._send_lock:  # one flusher at a time: the spool is a FIFO
            self._spool_buffer()
            now = time.monotonic()
            if now < self._retry_at:
                return
            if self._spool.pending():
                progress = send_pending(self._spool, self._client)
                reply, error = progress.reply, progress.error
            elif now - self._last_sent >= self._heartbeat:
                reply, error = self._beat()
            else:
                return
            self._heard(reply, error)

    def _heard(self, reply: LogReply | None, error: BaseException | None) -> None:
        if reply is not None:
            self._full = self._full or not reply.accepted
            self._go_on = reply.continue_
        if error is None:
            self._last_sent = time.monotonic()
            if self._failing:
                log.warning("job %s: the API answers again; spooled output sent", self._job)
            self._failing, self._backoff = False, BACKOFF_FIRST
            return
        # A blip must not kill the job: the output waits in the spool, the lease absorbs it.
        if not self._failing:
            log.warning("log flush for job %s failed (output is spooled): %s", self._job, error)
        self._failing = True
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, BACKOFF_MAX)

    def _beat(self) -> tuple[LogReply | None, BaseException | None]:
        try:
            return self._client.log(self._job, self._attempt, "", None, self._spool.job_token), None
        except Exception as exc:
            return None, exc

    def _loop(self) -> None:
        # Started once the first interval passed (``_start``): flush at once, then each
        # interval.
        while not self._stop.is_set():
            try:
                self._flush()
            except Exception:  # never let the flusher die: the job still runs
                log.exception("log flusher of job %s", self._job)
            self._stop.wait(self._interval)

    def close(self) -> None:
        """Stop the thread and spool what is left, without sending it: the finish report
        that follows carries it (:func:`~farm.worker.spool.send_pending`), so the end of
        a job costs one request, not two. Whatever is not sent then stays in the spool
        for :func:`~farm.worker.spool.deliver`.
        """
        self._stop.set()
        if self._starter is not None:
            self._starter.cancel()
        with self._starting:  # a start under way completes first
            started = self._thread.ident is not None
        if started:
            self._thread.join(timeout=15)
        tail = self._decoder.decode(b"", final=True)
        with self._lock:
            self._buf.append(self._masker.feed(tail))
            self._buf.append(self._masker.flush())
        with self._send_lock:
            # Not fsynced here: the finish report appended next is, and it covers these
            # lines (nothing is sent before).
            self._spool_buffer(durable=False)
