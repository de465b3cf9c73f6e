"""The blob data plane: whole-blob GET and PUT by digest, with the kernel moving the bytes.

The API (FastAPI on uvicorn) keeps the complete blob HTTP API: HEAD, ranged GET,
resumable upload sessions.  Big transfers there cost a third of a plain file copy's
speed, so a filesystem-backed farm also listens on a second port (``FARM_BLOB_PORT``)
where the same paths answer a narrow, fast subset:

* ``GET /api/v1/blobs/{digest}`` (optionally one ``Range``): sendfile from the store;
  a whole read is hashed on another thread as it goes and its last MiB is withheld
  until the digest matched, so a corrupted blob is never delivered whole;
* ``PUT /api/v1/blobs/{digest}`` with ``Content-Length``: spliced into a temp file,
  hashed behind the writes, fsynced, renamed under its digest (or refused, 4xx).

Heads are HTTP/1.1 through h11, one request per connection; error answers match the
API's (JSON ``detail`` and ``X-Farm-Error``).  Clients find the address at
``GET /api/v1/registry/endpoints`` and fall back to the API when it is unreachable
(for example behind a proxy that forwards only the API port).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable

import h11

from farm.errors import BlobNotFound, FarmError, RegistryError
from farm.registry.store.digests import Sums, at_rest_hasher, digest_hex, upload_error
from farm.registry.store.filesystem import FilesystemBlobStore
from farm.registry.transfer import zerocopy
from farm.registry.transfer.wire import (
    BLOBS,
    PREVERIFY_MAX_BYTES,
    Head,
    WireError,
    count_body,
    headers,
    parse_range,
    read_head,
    send_json,
)

log = logging.getLogger("farm.registry.transfer.server")

_PATH_RE = re.compile(BLOBS.encode() + rb"/(sha256:[0-9a-f]{64})")
HOLD_BACK = 1024 * 1024  # bytes of a whole read withheld until its digest matched
HEAD_TIMEOUT = 10.0  # seconds for a request head to arrive, whole


class Counters:
    """What the data plane moved, for ``/metrics`` (monotonic, thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values = {"bytes_sent": 0, "bytes_received": 0, "requests": 0, "failures": 0}

    def add(self, name: str, n: int = 1) -> None:
        """Increase one counter."""
        with self._lock:
            self.values[name] += n


# Checks a request's method and ``Authorization`` header; raises a FarmError (401/403)
# to refuse it.  The API passes its token check; None serves anyone (tests, auth off).
Authorize = Callable[[str, str | None], None]


class BlobDataServer:
    """A threaded listener serving a :class:`FilesystemBlobStore`'s data plane."""

    def __init__(
        self,
        store: FilesystemBlobStore,
        host: str,
        port: int,
        *,
        max_blob_bytes: int,
        timeout: float = 60.0,
        max_connections: int = 64,
        authorize: Authorize | None = None,
    ) -> None:
        self.store = store
        self.authorize = authorize
        self.max_blob_bytes = max_blob_bytes
        self.timeout = timeout
        self._slots = threading.BoundedSemaphore(max_connections)
        self.counters = Counters()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server((host, port), family=family, backlog=128)
        self._stopped = threading.Event()
        self._live: set[socket.socket] = set()  # connections in flight, cut by stop()
        self._live_lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="farm-blob-data", daemon=True)

    @property
    def port(self) -> int:
        """The port actually bound (``FARM_BLOB_PORT=0`` picks a free one)."""
        return int(self._listener.getsockname()[1])

    def start(self) -> BlobDataServer:
        """Start accepting connections on a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting and cut the transfers in flight (their temp files go with them)."""
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._live_lock:
            for sock in self._live:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def url_for(self, hostname: str) -> str:
        """This data plane's base URL as seen by a client that reached us as ``hostname``."""
        host = f"[{hostname}]" if ":" in hostname else hostname
        return f"http://{host}:{self.port}"

    def _accept(self) -> None:
        while not self._stopped.is_set():
            if not self._slots.acquire(timeout=0.5):  # a full house waits in the backlog
                continue
            try:
                sock, _ = self._listener.accept()
            except OSError:
                self._slots.release()
                return  # closed by stop()
            with self._live_lock:
                self._live.add(sock)
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=16 * 1024)
        try:
            # A head must arrive soon and whole; a slow trickle loses its slot.
            zerocopy.use_kernel_timeouts(sock, HEAD_TIMEOUT)
            head = read_head(conn, sock, h11.Request, deadline=time.monotonic() + HEAD_TIMEOUT)
            zerocopy.use_kernel_timeouts(sock, self.timeout)
            self.counters.add("requests")
            self._route(conn, sock, head)
        except FarmError as exc:
            self.counters.add("failures")
            self._fail(conn, sock, exc)
        except (OSError, WireError, h11.ProtocolError) as exc:
            self.counters.add("failures")
            log.info("blob data connection dropped: %s", exc)
        finally:
            with self._live_lock:
                self._live.discard(sock)
            sock.close()
            self._slots.release()

    def _fail(self, conn: h11.Connection, sock: socket.socket, exc: FarmError) -> None:
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            # Body bytes already went out: cutting the connection is the only way to
            # tell the client (a corrupted blob, found while streaming).
            log.error("blob transfer aborted: %s", exc)
            return
        with contextlib.suppress(OSError, h11.ProtocolError):
            send_json(
                conn,
                sock,
                exc.http_status,
                {"detail": str(exc), "error": type(exc).__name__},
                {"X-Farm-Error": type(exc).__name__},
            )

    def _route(self, conn: h11.Connection, sock: socket.socket, head: Head[h11.Request]) -> None:
        path = bytes(head.event.target).partition(b"?")[0]
        match = _PATH_RE.fullmatch(path)
        if match is None:
            raise _status(RegistryError(f"no blob data route for {path.decode('latin-1')}"), 404)
        digest = match[1].decode()
        method = bytes(head.event.method)
        if self.authorize is not None:  # before any byte of a blob moves
            self.authorize(method.decode("latin-1"), head.header("authorization"))
        if method == b"GET":
            self._get(conn, sock, head, digest)
        elif method == b"PUT":
            self._put(conn, sock, head, digest)
        else:
            raise _status(RegistryError("the blob data plane answers GET and PUT only"), 405)

    def _get(
        self, conn: h11.Connection, sock: socket.socket, head: Head[h11.Request], digest: str
    ) -> None:
        info = self.store.stat(digest)
        fields = {
            "ETag": f'"{digest}"',
            "Docker-Content-Digest": digest,
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        status, start, count = 200, 0, info.size
        range_header = head.header("range")
        if range_header is not None:
            bounds = parse_range(range_header, info.size)
            if bounds is None:
                message = f"range {range_header!r} not satisfiable for {info.size} bytes"
                send_json(
                    conn,
                    sock,
                    416,
                    {"detail": message, "error": "RegistryError"},
                    {"Content-Range": f"bytes */{info.size}", "X-Farm-Error": "RegistryError"},
                )
                return
            start, count, status = bounds[0], bounds[1] - bounds[0] + 1, 206
            fields["Content-Range"] = f"bytes {bounds[0]}-{bounds[1]}/{info.size}"
        fields["Content-Length"] = str(count)
        path = self.store.path_for(digest)
        try:
            if path is None:
                raise FileNotFoundError(digest)
            f = open(path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:  # deleted by GC since stat
            raise BlobNotFound(f"blob {digest} not found") from None
        with f:
            # Checked whole before the first byte: a small blob (a corrupted one answers
            # a clean 500, and one read of it is cheaper than a hashing thread), and a
            # range that completes the blob (a resumed download), or resuming would
            # deliver a corrupted blob after all.  Big whole reads are checked as they go.
            checked_first = (status == 200 and info.size <= PREVERIFY_MAX_BYTES) or (
                status == 206 and start + count == info.size
            )
            if checked_first:
                self.store.check(digest, f.fileno())
            sock.sendall(conn.send(h11.Response(status_code=status, headers=headers(fields))))
            if status == 206 or checked_first:
                zerocopy.send_range(sock, f.fileno(), start, count)
            else:
                self._send_verified(sock, f.fileno(), info.size, digest)
            count_body(conn, count)
            self.counters.add("bytes_sent", count)
            conn.send(h11.EndOfMessage())

    def _send_verified(self, sock: socket.socket, fd: int, size: int, digest: str) -> None:
        """Send a whole blob behind a thread that checks it; its tail only once it matched.

        The check is the blob's at-rest checksum (digests.py); a mismatch is settled by
        a full sha256 of the open file before the blob is called corrupted.  A blob
        without a record is checked by sha256 while a second thread computes the record
        for next time.  Sending only checked bytes keeps one sequential reader on the
        file (the hasher's readahead), so sendfile finds its pages in the cache.
        """
        expected = self.store.checksums.read(digest_hex(digest))
        os.posix_fadvise(fd, 0, size, os.POSIX_FADV_SEQUENTIAL)
        if expected is None:
            hashers = [
                zerocopy.FileHasher(fd, end=size, mapped=False),
                zerocopy.FileHasher(fd, end=size, hasher=at_rest_hasher(), mapped=False),
            ]
        else:
            hashers = [zerocopy.FileHasher(fd, end=size, hasher=at_rest_hasher(), mapped=False)]
        sent, body = 0, size - min(size, HOLD_BACK)
        try:
            while sent < body:
                ready = min(hashers[0].wait_hashed(sent + 1), body)
                if ready <= sent:
                    break  # hashing stopped: finish() says why
                zerocopy.send_range(sock, fd, sent, ready - sent)
                sent = ready
        except BaseException:
            zerocopy.cancel_all(*hashers)  # the client is gone: no reason to hash on
            raise
        actual = zerocopy.finish_all(*hashers)
        if actual[0] != (expected or digest_hex(digest)):
            self.store.settle(digest, fd)  # CorruptBlob, or the record was bad (rewritten)
        elif expected is None:
            self.store.checksums.write(digest_hex(digest), actual[1])
        zerocopy.send_range(sock, fd, sent, size - sent)

    def _put(
        self, conn: h11.Connection, sock: socket.socket, head: Head[h11.Request], digest: str
    ) -> None:
        digest_hex(digest)
        length = head.content_length()
        if length is None:
            raise upload_error("a blob PUT to the data plane needs a Content-Length", 411)
        if length > self.max_blob_bytes:
            raise upload_error(
                f"blob of {length} bytes over the limit of {self.max_blob_bytes}", 413
            )
        if conn.they_are_waiting_for_100_continue:
            sock.sendall(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
        existed = self.store.has(digest)

        def receive(fd: int) -> Sums:
            # sha256 (the name) and the at-rest checksum, each on a thread of its own.
            # The faster checksum thread also starts the writeback (sync_file_range does
            # the filesystem's block allocation on the calling thread): the sha256
            # thread, the critical path, only hashes (0 to 8 % faster per GiB here).
            sha = zerocopy.FileHasher(fd)
            at_rest = zerocopy.FileHasher(fd, hasher=at_rest_hasher(), writeback=True)

            def landed(end: int) -> None:
                sha.advance(end)
                at_rest.advance(end)

            offset = 0
            try:
                for piece in head.early_body:
                    offset += os.pwrite(fd, piece, offset)
                landed(offset)
                offset += zerocopy.receive_into(sock, fd, offset, length - offset, landed)
                if offset < length:
                    raise upload_error(f"upload ended after {offset} of {length} bytes", 400)
            except BaseException:
                zerocopy.cancel_all(sha, at_rest)
                raise
            sha_hex, at_rest_hex = zerocopy.finish_all(sha, at_rest)
            return Sums(f"sha256:{sha_hex}", length, at_rest_hex)

        info = self.store.put_received(receive, digest)
        self.counters.add("bytes_received", length)
        send_json(
            conn,
            sock,
            200 if existed else 201,
            {"digest": info.digest, "size": info.size},
            {"Location": f"{BLOBS}/{digest}", "Docker-Content-Digest": digest},
        )


def _status(error: FarmError, status: int) -> FarmError:
    error.http_status = status  # one error tree; the wire wants finer codes
    return error
