"""HTTP/1.1 message heads over a raw socket, with h11, for the blob data plane.

h11 parses and writes heads (request line, status line, headers, framing rules);
the bodies bypass it: once a head is read, whatever h11 already buffered is handed
over and the rest of the body is spliced or sendfiled by ``zerocopy``.  Every
data-plane exchange is one request per connection (``Connection: close``), so h11
never needs to see a body it did not parse.
"""

from __future__ import annotations

import json
import re
import socket
import time
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import h11

from farm import errors
from farm.errors import FarmError

BLOBS = "/api/v1/blobs"  # the blob routes' prefix, on the API and on the data plane
HEAD_READ_BYTES = 64 * 1024
MAX_HEAD_BYTES = 64 * 1024
E = TypeVar("E", h11.Request, h11.Response)
# Whole reads of blobs up to this size are re-hashed before the first byte, so that
# corruption answers a clean 500; larger ones are checked while they stream.
PREVERIFY_MAX_BYTES = 64 * 1024 * 1024
_RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)")


class WireError(Exception):
    """The peer broke HTTP or the connection: nothing sensible can be answered."""


@dataclass
class Head(Generic[E]):
    """A message head, the body bytes h11 had already read, and whether it was all."""

    event: E
    early_body: list[bytes] = field(default_factory=list)
    complete: bool = False

    def header(self, name: str) -> str | None:
        """A header's value (the first one), or None."""
        wanted = name.lower().encode()
        for key, value in self.event.headers:
            if key == wanted:
                return bytes(value).decode("latin-1")
        return None

    def content_length(self) -> int | None:
        """``Content-Length`` as an int, or None when absent."""
        value = self.header("content-length")
        return int(value) if value is not None else None


def read_head(
    conn: h11.Connection, sock: socket.socket, kind: type[E], deadline: float | None = None
) -> Head[E]:
    """Read until h11 has the head of a ``kind`` message; keep the body bytes it has.

    ``deadline`` (``time.monotonic()``) bounds the whole head, not each receive.
    """
    head = _read(conn, sock, kind, stop_on_continue=False, deadline=deadline)
    assert head is not None  # only a 100 Continue stops early, and not here
    return head


def await_continue(conn: h11.Connection, sock: socket.socket) -> Head[h11.Response] | None:
    """After ``Expect: 100-continue``: None once the server says go on, else its answer."""
    return _read(conn, sock, h11.Response, stop_on_continue=True, deadline=None)


def _read(
    conn: h11.Connection,
    sock: socket.socket,
    kind: type[E],
    *,
    stop_on_continue: bool,
    deadline: float | None,
) -> Head[E] | None:
    head: Head[E] | None = None
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise WireError(f"bad HTTP from peer: {exc}") from None
        if event is h11.NEED_DATA:
            if head is not None:
                return head  # the rest of the body is still in the socket
            if deadline is not None and time.monotonic() > deadline:
                raise WireError("the message head did not arrive in time")
            data = sock.recv(HEAD_READ_BYTES)
            conn.receive_data(data)  # b"" tells h11 the peer closed
        elif isinstance(event, h11.InformationalResponse):
            if stop_on_continue and event.status_code == 100:
                return None
        elif isinstance(event, kind):
            head = Head(event)
        elif isinstance(event, h11.Data) and head is not None:
            head.early_body.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage) and head is not None:
            head.complete = True
            return head
        elif isinstance(event, h11.ConnectionClosed):
            raise WireError("the peer closed the connection before a complete message head")
        else:
            raise WireError(f"unexpected HTTP event {type(event).__name__}")


def read_small_body(
    conn: h11.Connection, sock: socket.socket, head: Head[E], limit: int = MAX_HEAD_BYTES
) -> bytes:
    """The rest of a short body (an error's JSON) through h11; at most ``limit`` bytes."""
    body = b"".join(head.early_body)
    while not head.complete and len(body) < limit:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(sock.recv(HEAD_READ_BYTES))
        elif isinstance(event, h11.Data):
            body += bytes(event.data)
        else:  # EndOfMessage, or the peer closed: what came is all there is
            break
    return body[:limit]


class Placeholder:
    """Stands for ``n`` body bytes that are sent with sendfile, not through h11."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


def count_body(conn: h11.Connection, n: int) -> None:
    """Tell h11 that ``n`` body bytes went out by another path (its framing check)."""
    if n:
        conn.send_with_data_passthrough(h11.Data(data=Placeholder(n)))  # type: ignore[arg-type]


def headers(pairs: dict[str, str]) -> list[tuple[str, str]]:
    """h11 header list from a dict, always closing the connection after the exchange."""
    return [*pairs.items(), ("Connection", "close")]


def send_json(
    conn: h11.Connection,
    sock: socket.socket,
    status: int,
    body: object,
    extra: dict[str, str] | None = None,
) -> None:
    """A complete JSON response (errors and PUT results)."""
    payload = json.dumps(body).encode()
    fields = {"Content-Type": "application/json", "Content-Length": str(len(payload))}
    response = h11.Response(status_code=status, headers=headers({**fields, **(extra or {})}))
    data = conn.send(response) or b""
    data += conn.send(h11.Data(data=payload)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    sock.sendall(data)


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """Inclusive (start, end) of a single ``bytes=`` range, None if unsatisfiable."""
    match = _RANGE_RE.fullmatch(header.strip())
    if match is None or not (match[1] or match[2]) or size == 0:
        return None
    if match[1]:
        start = int(match[1])
        end = min(int(match[2]), size - 1) if match[2] else size - 1
        return (start, end) if start < size and start <= end else None
    suffix = int(match[2])
    return (max(0, size - suffix), size - 1) if suffix > 0 else None


def error_from(status: int, error_name: str, body: bytes, where: str) -> FarmError:
    """The FarmError for an HTTP error answer (API or data plane): ``errors.from_wire``."""
    return errors.from_wire(status, error_name, body, where)
