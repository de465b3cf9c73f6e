"""How a chunk of job output is stored: the log cap, its marker, and resent chunks.

Pure, so the store and its test fake apply the one rule. A worker's log chunks carry
the byte offset of the output it sent before them (``LogRequest.offset``); a worker
that re-sends after an outage (its spool) may send bytes the API already stored when
only the answer was lost, and those are skipped here, so a resend is stored once.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tail:
    """Output that comes with an attempt's finish report, to store with it under ``cap``
    (``offset``: UTF-8 bytes of output the worker sent before it, as in a log request)."""

    data: str
    offset: int | None
    cap: int


def truncation_marker(cap: int) -> str:
    """The line stored once when a log reaches its cap."""
    return f"\n[farm] log truncated: the job wrote more than {cap} bytes\n"


def fit_chunk(used: int, data: str, cap: int, offset: int | None = None) -> tuple[str, int] | None:
    """(text to store, the log's new size) for a chunk; None when nothing is stored.

    ``used`` is what the attempt's log holds (bytes), ``offset`` where the worker says the
    chunk starts. Past ``cap`` the chunk is cut and the marker appended; the size is
    then ``cap``.
    """
    if used >= cap:
        return None
    raw = data.encode()
    if offset is not None and offset < used:
        raw = raw[used - offset :]  # the API already has the first bytes of this chunk
    if not raw:
        return None
    if used + len(raw) > cap:
        return raw[: cap - used].decode(errors="ignore") + truncation_marker(cap), cap
    return raw.decode(errors="ignore"), used + len(raw)
