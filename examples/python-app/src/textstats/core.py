"""Counting words, lines and characters."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

_WORD = re.compile(r"[^\W_]+(?:['\u2019-][^\W_]+)*", re.UNICODE)


def words(text: str) -> list[str]:
    """Split *text* into lower-cased words; apostrophes and hyphens stay inside words."""
    return [w.lower().replace("\u2019", "'") for w in _WORD.findall(text)]


@dataclass(frozen=True)
class Stats:
    lines: int
    words: int
    chars: int
    unique_words: int
    counts: Counter[str] = field(repr=False, compare=False, default_factory=Counter)

    @property
    def average_word_length(self) -> float:
        total = sum(len(w) * n for w, n in self.counts.items())
        return total / self.words if self.words else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "lines": self.lines,
            "words": self.words,
            "chars": self.chars,
            "unique_words": self.unique_words,
            "average_word_length": round(self.average_word_length, 3),
        }


def analyze(text: str) -> Stats:
    """Return line, word and character counts for *text* (``wc`` semantics for lines)."""
    ws = words(text)
    counts = Counter(ws)
    return Stats(
        lines=text.count("\n") + (1 if text and not text.endswith("\n") else 0),
        words=len(ws),
        chars=len(text),
        unique_words=len(counts),
        counts=counts,
    )


def top_words(
    text: str, n: int = 10, *, stopwords: frozenset[str] = frozenset()
) -> list[tuple[str, int]]:
    """The *n* most frequent words, ties broken alphabetically."""
    if n < 0:
        raise ValueError("n must be >= 0")
    counts = Counter(w for w in words(text) if w not in stopwords)
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
