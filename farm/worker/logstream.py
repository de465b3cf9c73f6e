"""Streams a job's output to the coordinator while it runs, and hears about cancels.

Output is batched (a few hundred ms) so a chatty job costs few requests; every
flush doubles as the attempt's heartbeat, and the answer tells us whether the
attempt should go on (it was canceled or handed to another worker otherwise).
"""

from __future__ import annotations

import codecs
import logging
import threading
import time
from types import TracebackType

from farm.domain.messages import MAX_LOG_CHUNK
from farm.worker.api_client import CoordinatorClient
from farm.worker.masking import Masker

log = logging.getLogger("farm.worker")


class LogStream:
    """A background flusher for one attempt's output; ``canceled()`` polls its verdict."""

    def __init__(
        self,
        client: CoordinatorClient,
        job_id: int,
        attempt: int,
        interval: float = 0.3,
        heartbeat: float = 2.0,
        masks: list[str] | None = None,
    ) -> None:
        self._client = client
        self._job = job_id
        self._attempt = attempt
        self._interval = interval
        self._heartbeat = heartbeat
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buf: list[str] = []
        self._masker = Masker(masks or ())
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._go_on = True
        self._full = False
        self._thread = threading.Thread(target=self._loop, name=f"log-{job_id}", daemon=True)

    def __enter__(self) -> LogStream:
        self._thread.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

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

    def _flush(self) -> None:
        with self._lock:
            text = "".join(self._buf)
            self._buf.clear()
        if self._full:
            text = ""  # the coordinator caps the log; keep heartbeating only
        # A burst larger than one request may carry goes out in several, in order.
        chunks = [text[i : i + MAX_LOG_CHUNK] for i in range(0, len(text), MAX_LOG_CHUNK)]
        for chunk in chunks or [""]:
            try:
                reply = self._client.log(self._job, self._attempt, chunk)
            except Exception as exc:  # a blip must not kill the job; the lease absorbs it
                log.warning("log flush for job %s failed: %s", self._job, exc)
                return
            self._full = self._full or not reply.accepted
            self._go_on = reply.continue_
            if self._full or not self._go_on:
                return

    def _loop(self) -> None:
        last = 0.0
        while not self._stop.wait(self._interval):
            with self._lock:
                pending = bool(self._buf)
            if pending or time.monotonic() - last >= self._heartbeat:
                self._flush()
                last = time.monotonic()

    def close(self) -> None:
        """Flush what is left and stop the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        tail = self._decoder.decode(b"", final=True)
        with self._lock:
            self._buf.append(self._masker.feed(tail))
            self._buf.append(self._masker.flush())
        self._flush()
