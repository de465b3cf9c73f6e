"""Typed reading of YAML values that records a diagnostic instead of raising.

Every ``as_*`` helper returns the converted value, or ``None`` after recording what was
wrong, where, and what is allowed instead. Also: durations ("1h 30m") and path globs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from farm.errors import Diagnostic
from farm.pipeline.limits import Budget
from farm.pipeline.yamlsrc import Pos, YList, type_name

MAX_DIAGNOSTICS = 1_000  # problems listed; a file repeating one mistake says how many more
MAX_LIST_NESTING = 10  # GitLab flattens lists nested by !reference up to 10 levels


class Diags:
    """Collects every problem found while loading one pipeline (the first 1,000 of them)."""

    def __init__(self) -> None:
        self.items: list[Diagnostic] = []
        self.muted: set[tuple[str, int]] = set()
        self.unique: set[Diagnostic] = set()
        self.dropped = 0
        self.warnings: list[Diagnostic] = []  # accepted, but not applied here

    def warn(self, pos: Pos, message: str) -> None:
        """Record a keyword farm accepts and ignores (or applies only partly)."""
        diag = Diagnostic(pos[0], pos[1], pos[2], message)
        if diag not in self.warnings and len(self.warnings) < MAX_DIAGNOSTICS:
            self.warnings.append(diag)

    def mute(self, pos: Pos) -> None:
        """Drop later problems on this line: they follow from one already reported."""
        self.muted.add((pos[0], pos[1]))

    def add(self, pos: Pos, message: str) -> None:
        if (pos[0], pos[1]) in self.muted:
            return
        diag = Diagnostic(pos[0], pos[1], pos[2], message)
        if diag in self.unique:
            return
        if len(self.items) >= MAX_DIAGNOSTICS:
            self.dropped += 1
            return
        self.unique.add(diag)
        self.items.append(diag)

    def __len__(self) -> int:
        return len(self.items)

    def sorted(self) -> list[Diagnostic]:
        """Unique diagnostics, in file order of first appearance then line order."""
        order: dict[str, int] = {}
        for d in self.items:
            order.setdefault(d.file, len(order))
        found = sorted(self.items, key=lambda d: (order[d.file], d.line, d.col))
        if self.dropped:
            last = found[-1]
            more = f"{self.dropped:,} more problems are not listed; fix the ones above first"
            found.append(Diagnostic(last.file, last.line, last.col, more))
        return found


def flatten(d: Diags, value: Any, pos: Pos, what: str, budget: Budget | None = None) -> Any:
    """``value`` with lists nested in it (``- !reference [...]`` items) spliced in place.

    GitLab flattens such lists in ``script``, ``rules``, ``needs``, ``services`` and the like,
    up to :data:`MAX_LIST_NESTING` levels; deeper nesting is an error. Anything but a list
    is returned as is. ``budget`` counts every item flattened (references share lists, so a
    few lines can stand for many items).
    """
    if not isinstance(value, list) or not any(isinstance(v, list) for v in value):
        return value
    items: list[Any] = []
    ipos: list[Pos] = []
    deep: list[Pos] = []

    def add(seq: list[Any], at: Pos, depth: int) -> None:
        if budget is not None:
            budget.add_flattened(len(seq), at)
        for i, item in enumerate(seq):
            here = seq.at(i) if isinstance(seq, YList) else at
            if not isinstance(item, list):
                items.append(item)
                ipos.append(here)
            elif depth >= MAX_LIST_NESTING:
                deep.append(here)
            else:
                add(item, here, depth + 1)

    add(value, pos, 1)
    if deep:
        d.add(deep[0], f"{what} nests lists more than {MAX_LIST_NESTING} levels deep")
    return YList(value.pos if isinstance(value, YList) else pos, items, ipos)


def as_str(d: Diags, value: Any, pos: Pos, what: str) -> str | None:
    """A string; numbers are accepted and written as YAML wrote them."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    d.add(pos, f"{what} must be a string, not {type_name(value)}")
    return None


def as_bool(d: Diags, value: Any, pos: Pos, what: str) -> bool | None:
    if isinstance(value, bool):
        return value
    d.add(pos, f"{what} must be true or false, not {type_name(value)}")
    return None


def as_int(d: Diags, value: Any, pos: Pos, what: str, low: int, high: int) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
        return value
    d.add(pos, f"{what} must be a whole number from {low} to {high}, not {value!r}")
    return None


def as_str_list(
    d: Diags, value: Any, pos: Pos, what: str, single: bool = False
) -> list[str] | None:
    """A list of strings (or one string when ``single``)."""
    if single and isinstance(value, str | int | float) and not isinstance(value, bool):
        return [str(value)]
    if not isinstance(value, list):
        allowed = "a string or a list of strings" if single else "a list of strings"
        d.add(pos, f"{what} must be {allowed}, not {type_name(value)}")
        return None
    result: list[str] = []
    ok = True
    for i, item in enumerate(value):
        ipos = value.at(i) if isinstance(value, YList) else pos
        text = as_str(d, item, ipos, f"each entry of {what}")
        if text is None:
            ok = False
        else:
            result.append(text)
    return result if ok else None


def as_choice(d: Diags, value: Any, pos: Pos, what: str, choices: Iterable[str]) -> str | None:
    allowed = tuple(choices)
    if isinstance(value, str) and value in allowed:
        return value
    d.add(pos, f"{what} must be one of {', '.join(allowed)}, not {value!r}")
    return None


def unknown_keys(d: Diags, mapping: dict[str, Any], allowed: Iterable[str], what: str) -> None:
    """Record every key of ``mapping`` not in ``allowed``."""
    known = tuple(allowed)
    kpos = getattr(mapping, "kpos", {})
    pos0 = getattr(mapping, "pos", ("<pipeline>", 0, 0))
    for key in mapping:
        if key not in known:
            d.add(
                kpos.get(key, pos0), f"unknown key '{key}' in {what}; allowed: {', '.join(known)}"
            )


_UNITS = {
    "s": 1,
    "sec": 1,
    "secs": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hr": 3600,
    "hrs": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
    "w": 604800,
    "wk": 604800,
    "week": 604800,
    "weeks": 604800,
    "mo": 2592000,
    "month": 2592000,
    "months": 2592000,
    "y": 31536000,
    "yr": 31536000,
    "year": 31536000,
    "years": 31536000,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)")


def parse_duration(value: Any) -> int | None:
    """Seconds in a human duration like ``1h 30m``, ``3600``, ``10 minutes 30 seconds``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= 0 else None
    if not isinstance(value, str):
        return None
    text = value.strip().lower().replace(",", " ").replace(" and ", " ")
    if not text:
        return None
    total = 0.0
    end = 0
    for match in _DURATION_PART.finditer(text):
        if text[end : match.start()].strip():
            return None
        unit = match.group(2) or "s"
        if unit not in _UNITS:
            return None
        total += float(match.group(1)) * _UNITS[unit]
        end = match.end()
    if end == 0 or text[end:].strip():
        return None
    return int(total)


@lru_cache(maxsize=4096)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """A path glob as a regex: ``*`` within a directory, ``**`` across, ``{a,b}`` alternatives."""
    pat = pattern.lstrip("/")
    out: list[str] = []
    i = 0
    depth = 0
    while i < len(pat):
        c = pat[i]
        if pat.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pat.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "{":
            depth += 1
            out.append("(?:")
        elif c == "}" and depth:
            depth -= 1
            out.append(")")
        elif c == "," and depth:
            out.append("|")
        elif c == "[":
            close = pat.find("]", i + 1)
            if close == -1:
                out.append(re.escape(c))
            else:
                body = pat[i + 1 : close].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]" if body else re.escape("[]"))
                i = close
        else:
            out.append(re.escape(c))
        i += 1
    out.extend(")" * depth)
    try:
        return re.compile("".join(out) + r"\Z")
    except re.error:
        return re.compile(re.escape(pat) + r"\Z")


def glob_match(pattern: str, path: str) -> bool:
    """Whether repository path ``path`` matches ``pattern``."""
    return glob_regex(pattern).match(path.lstrip("/")) is not None


def has_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[{")
