"""``farm logs JOB``: a job's log, every attempt of it, coloured only for a terminal.

A job that ran more than once (``retry:``, a lost worker, ``farm retry``) keeps each
attempt's log; each is printed under a ``--- attempt N ---`` header, so a retried job's
output never runs into the next attempt's. ANSI colour codes from the job are kept on
a terminal and stripped in a pipe or a file (``--color always|never|auto``).
"""

from __future__ import annotations

import re
import sys
import time
from typing import Any

import click

from farm.cli.client import ApiClient
from farm.domain.statuses import FINAL_JOB

# CSI (colours, cursor moves) and OSC (titles, hyperlinks) sequences, and lone ESC pairs.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\^_])")


class AnsiStripper:
    """Removes ANSI escape sequences from a stream of text chunks (a sequence may be
    split between two chunks: its start is held back until the rest arrives)."""

    def __init__(self) -> None:
        self._held = ""

    def feed(self, text: str) -> str:
        """The printable text of ``text`` (and of what was held back)."""
        text = self._held + text
        self._held = ""
        cut = text.rfind("\x1b")
        if cut != -1 and _ANSI.match(text, cut) is None and len(text) - cut < 256:
            text, self._held = text[:cut], text[cut:]
        return _ANSI.sub("", text)

    def flush(self) -> str:
        """What is still held back (an escape that never ended), stripped."""
        held, self._held = self._held, ""
        return _ANSI.sub("", held).replace("\x1b", "")


def strip_ansi(text: str) -> str:
    """``text`` without ANSI escape sequences."""
    stripper = AnsiStripper()
    return stripper.feed(text) + stripper.flush()


def _out(text: str, stripper: AnsiStripper | None) -> None:
    if stripper is not None:
        text = stripper.feed(text)
    if text:
        sys.stdout.write(text)
        sys.stdout.flush()


def _header(attempt: int) -> None:
    sys.stdout.write(f"--- attempt {attempt} ---\n")


def _read_all(api: ApiClient, job_id: int, attempt: int, out: AnsiStripper | None) -> None:
    cursor = 0
    while True:
        params: dict[str, Any] = {"after": cursor, "attempt": attempt}
        resp = api.request("GET", f"/api/v1/jobs/{job_id}/log", params=params)
        if not resp.text:
            return
        _out(resp.text, out)
        cursor = int(resp.headers.get("X-Farm-Log-Cursor", cursor))


@click.command()
@click.argument("job_id", type=int)
@click.option("-f", "--follow", "follow_", is_flag=True, help="keep reading while it runs")
@click.option(
    "--color",
    type=click.Choice(["auto", "always", "never"]),
    default="auto",
    show_default=True,
    help="keep the job's ANSI colours (auto: only on a terminal)",
)
@click.pass_context
def logs(ctx: click.Context, job_id: int, follow_: bool, color: str) -> None:
    """Print a job's log: every attempt, each under a header when there are several."""
    api = ApiClient(ctx.obj)
    keep = color == "always" or (color == "auto" and sys.stdout.isatty())
    stripper = None if keep else AnsiStripper()
    latest = int(api.json("GET", f"/api/v1/jobs/{job_id}")["attempt"])
    for attempt in range(1, latest):
        _header(attempt)
        _read_all(api, job_id, attempt, stripper)
        _out(stripper.flush() if stripper else "", None)
    shown = latest
    if latest > 1:
        _header(latest)
    cursor = 0
    while True:
        params = {"after": cursor, "attempt": shown}
        resp = api.request("GET", f"/api/v1/jobs/{job_id}/log", params=params)
        _out(resp.text, stripper)
        cursor = int(resp.headers.get("X-Farm-Log-Cursor", cursor))
        state = resp.headers.get("X-Farm-Job-Status", "")
        now = int(resp.headers.get("X-Farm-Job-Attempt", shown))
        if not follow_ or resp.text:
            if not follow_ and not resp.text:
                break
            continue
        current = int(api.json("GET", f"/api/v1/jobs/{job_id}")["attempt"])
        if current > shown:  # retried while we followed: go on with the next attempt
            _out(stripper.flush() if stripper else "", None)
            shown, cursor = current, 0
            _header(shown)
            continue
        if state in FINAL_JOB and now == shown:
            break
        time.sleep(0.5)
    _out(stripper.flush() if stripper else "", None)
