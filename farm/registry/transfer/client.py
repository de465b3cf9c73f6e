"""Client side of the blob data plane (see ``dataplane.py``): sendfile up, splice down.

:class:`RegistryClient` uses it for whole-blob uploads and downloads when the API
advertises a data plane, and falls back to the API when it cannot be reached.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import h11
import httpx

from farm.errors import FarmError
from farm.registry.store.digests import BlobInfo
from farm.registry.transfer import zerocopy
from farm.registry.transfer.wire import BLOBS as PREFIX
from farm.registry.transfer.wire import (
    Head,
    WireError,
    await_continue,
    count_body,
    error_from,
    headers,
    read_head,
    read_small_body,
)

T = TypeVar("T")
CONNECT_TIMEOUT = 5.0
# Something that accepts but never answers (a proxy, a full server) is not a data
# plane worth waiting for: after this long the client moves the blob via the API.
FIRST_ANSWER_TIMEOUT = 30.0


class TransferError(Exception):
    """The connection broke during a transfer: worth another attempt."""


class DataPlaneUnreachable(Exception):
    """Nothing answers at the advertised address: use the API instead."""


@dataclass
class Download:
    """A download in progress into an open file, kept across attempts to resume."""

    fd: int
    hasher: zerocopy.FileHasher = field(init=False)
    size: int = 0

    def __post_init__(self) -> None:
        self.hasher = zerocopy.FileHasher(self.fd)

    def landed(self, end: int) -> None:
        """Bytes up to ``end`` are in the file."""
        self.size = end
        self.hasher.advance(end)

    def restart(self) -> None:
        """Drop what arrived: the server is sending the whole blob again."""
        self.hasher.cancel()
        os.ftruncate(self.fd, 0)
        self.size = 0
        self.hasher = zerocopy.FileHasher(self.fd)


class DirectBlobClient:
    """Whole-blob transfers with the data plane at ``base_url`` (``http://host:port``)."""

    def __init__(self, base_url: str, timeout: float, token: str | None = None) -> None:
        url = httpx.URL(base_url)
        if url.scheme != "http" or not url.host:
            raise ValueError(f"unusable blob data URL {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._address = (url.host, url.port or 80)
        self._host_header = url.netloc.decode("ascii")
        self._timeout = timeout
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}

    def _connect(self) -> socket.socket:
        try:
            sock = socket.create_connection(self._address, timeout=CONNECT_TIMEOUT)
        except OSError as exc:
            raise DataPlaneUnreachable(f"blob data plane {self.base_url}: {exc}") from None
        zerocopy.use_kernel_timeouts(sock, FIRST_ANSWER_TIMEOUT)
        return sock

    def _first_answer(self, read: Callable[[], T]) -> T:
        """The server's first answer, then the transfer's own (longer) timeouts apply."""
        try:
            answer = read()
        except BlockingIOError:  # SO_RCVTIMEO expired: the peer accepted, then nothing
            raise DataPlaneUnreachable(
                f"blob data plane {self.base_url} did not answer in {FIRST_ANSWER_TIMEOUT:.0f} s"
            ) from None
        return answer

    def _request(self, method: str, digest: str, fields: dict[str, str]) -> h11.Request:
        return h11.Request(
            method=method,
            target=f"{PREFIX}/{digest}",
            headers=headers({"Host": self._host_header, **self._auth, **fields}),
        )

    def put_file(self, path: Path, info: BlobInfo) -> None:
        """Send ``path`` (whose digest and size are ``info``) with sendfile."""
        sock = self._connect()
        try:
            conn = h11.Connection(h11.CLIENT)
            fields = {
                "Content-Length": str(info.size),
                "Content-Type": "application/octet-stream",
                "Expect": "100-continue",  # refusals (413, bad digest) come before the body
            }
            sock.sendall(conn.send(self._request("PUT", info.digest, fields)))
            answer = self._first_answer(lambda: await_continue(conn, sock))
            zerocopy.use_kernel_timeouts(sock, self._timeout)
            if answer is None:
                with open(path, "rb") as f:
                    # A bigger readahead: sendfile reading a cold file waits on the disk.
                    os.posix_fadvise(f.fileno(), 0, info.size, os.POSIX_FADV_SEQUENTIAL)
                    zerocopy.send_range(sock, f.fileno(), 0, info.size)
                count_body(conn, info.size)
                conn.send(h11.EndOfMessage())
                answer = read_head(conn, sock, h11.Response)
            self._check(conn, sock, answer, "PUT", info.digest)
        except (OSError, WireError, h11.ProtocolError) as exc:
            raise TransferError(
                f"upload of {info.digest} to {self.base_url} broke: {exc}"
            ) from None
        finally:
            sock.close()

    def get_into(self, digest: str, download: Download) -> None:
        """Receive the blob into ``download``'s file, from where an earlier attempt stopped."""
        sock = self._connect()
        try:
            conn = h11.Connection(h11.CLIENT)
            fields = {"Range": f"bytes={download.size}-"} if download.size else {}
            sock.sendall(conn.send(self._request("GET", digest, fields)) or b"")
            sock.sendall(conn.send(h11.EndOfMessage()) or b"")
            head = self._first_answer(lambda: read_head(conn, sock, h11.Response))
            zerocopy.use_kernel_timeouts(sock, self._timeout)
            self._check(conn, sock, head, "GET", digest)
            if head.event.status_code == 200 and download.size:
                download.restart()
            length = head.content_length()
            if length is None:
                raise WireError("the data plane answered without a Content-Length")
            end = download.size + length
            for piece in head.early_body:
                download.landed(download.size + os.pwrite(download.fd, piece, download.size))
            zerocopy.receive_into(
                sock, download.fd, download.size, end - download.size, download.landed
            )
            if download.size < end:
                raise WireError(f"connection closed at byte {download.size} of {end}")
        except (OSError, WireError, h11.ProtocolError) as exc:
            raise TransferError(f"download of {digest} from {self.base_url} broke: {exc}") from None
        finally:
            sock.close()

    def _check(
        self,
        conn: h11.Connection,
        sock: socket.socket,
        head: Head[h11.Response],
        method: str,
        digest: str,
    ) -> None:
        status = head.event.status_code
        if status < 300:
            return
        body = read_small_body(conn, sock, head)
        error: FarmError = error_from(
            status, head.header("x-farm-error") or "", body, f"{method} {self.base_url}/{digest}"
        )
        raise error
