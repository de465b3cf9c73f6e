"""Moving blob bytes between sockets and files without copying them through Python.

The blob data plane (``dataplane.py`` and ``direct.py``) is built from these pieces:

* :func:`receive_into` splices a socket into a file (socket -> pipe -> page cache),
* :func:`send_range` sendfiles a file range into a socket,
* :class:`FileHasher` hashes a file's bytes on a thread of its own through short
  ``mmap`` windows, as far as they have been written (or all of them, ahead of a
  sender), and can start their writeback as it goes.

Through an ASGI server and httpx a 1 GiB blob crossed the loopback at about a third
of a plain file copy: every byte was copied into Python objects three or four times
and handled in 64 KiB pieces.  Here the kernel moves the bytes and the only pass
over them in user space is the sha256 that must happen anyway; it overlaps the
transfer, on the other core.  Linux only: :func:`available` says whether to use it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import hashlib
import mmap
import os
import socket
import struct
import threading
from collections.abc import Callable

from farm.registry.store.digests import Hasher, storage_error

WINDOW = 4 * 1024 * 1024  # bytes hashed per window: RSS stays at about one window each
PIPE_BYTES = 1024 * 1024
_F_SETPIPE_SZ = 1031
_SYNC_FILE_RANGE_WRITE = 2
_GRANULE = mmap.ALLOCATIONGRANULARITY


def available() -> bool:
    """Whether this platform has what the data plane needs (Linux: splice, sendfile)."""
    return hasattr(os, "splice") and hasattr(os, "sendfile")


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        function = libc.sync_file_range
    except (OSError, AttributeError, TypeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_sync_file_range = _load_sync_file_range()


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a range to disk now, without waiting for it.

    A blob is fsynced before it is committed; starting writeback behind the hasher
    leaves that fsync little to do instead of a whole blob's worth of dirty pages.
    """
    if _sync_file_range is not None and length > 0:
        _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def use_kernel_timeouts(sock: socket.socket, seconds: float) -> None:
    """Make ``sock`` blocking with kernel-side send/receive timeouts.

    splice and sendfile need a blocking descriptor (Python's own timeouts make it
    non-blocking); SO_RCVTIMEO/SO_SNDTIMEO still bound how long a stalled peer holds us.
    """
    sock.settimeout(None)
    whole = int(seconds)
    timeval = struct.pack("ll", whole, int((seconds - whole) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)


def send_range(sock: socket.socket, fd: int, offset: int, count: int) -> None:
    """sendfile ``count`` bytes of ``fd`` from ``offset``; ConnectionError if cut short."""
    end = offset + count
    while offset < end:
        sent = os.sendfile(sock.fileno(), fd, offset, end - offset)
        if sent == 0:
            raise ConnectionError(f"file ended at {offset} of {end} bytes while sending")
        offset += sent


def receive_into(
    sock: socket.socket, fd: int, offset: int, count: int, progress: Callable[[int], None]
) -> int:
    """Splice ``count`` bytes from ``sock`` into ``fd`` at ``offset``.

    ``progress(end)`` is told each time the bytes up to ``end`` are in the file.
    Returns the number of bytes received: less than ``count`` when the peer closed
    early (the caller decides whether that is an error or a resume point).
    """
    read_end, write_end = os.pipe()
    try:
        # Above /proc/sys/fs/pipe-max-size this fails and the default 64 KiB still works.
        with contextlib.suppress(OSError):
            fcntl.fcntl(write_end, _F_SETPIPE_SZ, PIPE_BYTES)
        received = 0
        while received < count:
            n = os.splice(sock.fileno(), write_end, min(PIPE_BYTES, count - received))
            if n == 0:
                break
            while n:
                try:
                    moved = os.splice(read_end, fd, n, offset_dst=offset + received)
                except OSError as exc:  # the disk, not the peer: say so (507 when full)
                    raise storage_error(exc) from None
                received += moved
                n -= moved
            progress(offset + received)
        return received
    finally:
        os.close(read_end)
        os.close(write_end)


class FileHasher:
    """sha256 (or another hash) of a file's bytes ``[start, end)``, on its own thread.

    Receivers call :meth:`advance` as bytes land in the file and the thread hashes
    behind them; a sender creates it with the whole size known and lets it hash
    ahead.  Memory stays flat: one window at a time.  Files this process is writing
    are read through ``mmap`` (no copy; only written bytes are mapped, so nothing
    faults); stored blobs (``mapped=False``) through ``pread`` into one reused
    buffer, because a media error or an outside truncation under a mapping is a
    SIGBUS that would take the whole API process down, where pread just fails.
    ``writeback`` starts disk writes for each hashed window (:func:`start_writeback`).
    """

    def __init__(
        self,
        fd: int,
        *,
        start: int = 0,
        end: int | None = None,
        writeback: bool = False,
        hasher: Hasher | None = None,
        mapped: bool = True,
    ) -> None:
        self._fd = fd
        self._hasher = hasher or hashlib.sha256()
        self._hashed = start
        self._target = start if end is None else end
        self._closed = end is not None
        self._cancelled = False
        self._writeback = writeback
        span = WINDOW if end is None else max(0, min(WINDOW, end - start))
        self._buffer = None if mapped else bytearray(span)
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="farm-blob-hash", daemon=True)
        self._thread.start()

    @property
    def hashed(self) -> int:
        """Offset up to which the bytes are hashed."""
        return self._hashed

    def advance(self, end: int) -> None:
        """The file now holds its bytes up to ``end``."""
        with self._cond:
            self._target = max(self._target, end)
            if self._target - self._hashed >= WINDOW:
                self._cond.notify_all()

    def wait_hashed(self, offset: int) -> int:
        """Block until the bytes up to ``offset`` are hashed (or hashing stopped)."""
        with self._cond:
            while self._hashed < offset and self._thread.is_alive():
                self._cond.wait(0.5)
            return self._hashed

    def finish(self) -> str:
        """Wait for the last byte to be hashed; the hex digest of everything so far."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._hasher.hexdigest()

    def cancel(self) -> None:
        """Stop after the window in hand (the transfer failed); the thread is gone after."""
        with self._cond:
            self._closed = self._cancelled = True
            self._cond.notify_all()
        self._thread.join()

    def _next_window(self) -> tuple[int, int] | None:
        with self._cond:
            while not self._closed and self._target - self._hashed < WINDOW:
                self._cond.wait()
            if self._cancelled or self._hashed >= self._target:
                return None
            return self._hashed, min(self._target, self._hashed + WINDOW)

    def _run(self) -> None:
        try:
            while (window := self._next_window()) is not None:
                start, end = window
                self._hash(start, end)
                if self._writeback:
                    start_writeback(self._fd, start, end - start)
                with self._cond:
                    self._hashed = end
                    self._cond.notify_all()
        except BaseException as exc:  # re-raised by finish(), on the caller's thread
            self._error = exc

    def _hash(self, start: int, end: int) -> None:
        if self._buffer is not None:
            view = memoryview(self._buffer)[: end - start]
            n = os.preadv(self._fd, [view], start)
            if n != end - start:
                raise OSError(f"file ended at byte {start + n}, expected {end}")
            self._hasher.update(view)
            return
        base = start - start % _GRANULE  # mmap offsets must be page-aligned
        with mmap.mmap(self._fd, end - base, prot=mmap.PROT_READ, offset=base) as window:
            window.madvise(mmap.MADV_SEQUENTIAL)
            with memoryview(window) as view:
                self._hasher.update(view[start - base :])


def finish_all(*hashers: FileHasher) -> list[str]:
    """Every hasher's digest; if one fails the others are cancelled, then it raises."""
    digests: list[str] = []
    for i, hasher in enumerate(hashers):
        try:
            digests.append(hasher.finish())
        except BaseException:
            for rest in hashers[i + 1 :]:
                rest.cancel()
            raise
    return digests


def cancel_all(*hashers: FileHasher) -> None:
    """Cancel every hasher (a transfer failed: their digests are of no use)."""
    for hasher in hashers:
        hasher.cancel()
