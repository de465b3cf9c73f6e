"""Masking secrets in a log stream before it leaves the worker.

Each secret is masked in plain text and in the forms a job is likely to print, by
accident or to get it past a plain-text mask (GitLab masks fewer): base64 (standard and
URL-safe, with and without padding, and the three alignments a secret can have inside a
longer base64 string), URL-encoding (``quote``, ``quote(safe="")``, ``quote_plus``), hex
(lower and upper case), reversed (``rev``) — see :func:`encoded_forms` — and *spaced
out*, forwards or reversed: its characters separated by runs of 1 to
:data:`MAX_SPACE` whitespace characters (``s e c r e t``, one per line as ``fold -w1``
prints it) or by one repeated punctuation character (``s-e-c-r-e-t``, ``s.e.c.r.e.t``),
for secrets of at least :data:`MIN_SPACED` characters — see :func:`spaced_pattern`.

The fixed forms are found with ``str.find`` (a C substring search per form: faster than
one big alternation in Python's regex engine), the spaced ones with one precompiled
regular expression whose branches all start with a literal, so the engine skips to
candidate positions quickly.

Output arrives in arbitrary chunks, so a secret can straddle two of them: the masker
holds back the last ``len(longest form) - 1`` characters until more text (or the end)
shows whether they start a secret, and keeps as many characters of what it already
emitted as context, so an occurrence that began inside an emitted mask is masked to its
end. Every occurrence is found (overlapping ones too) and each run of overlapping
occurrences becomes one ``[MASKED]``: the output does not depend on the chunking.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

MASK = "[MASKED]"
MIN_FORM = 4  # an encoded form shorter than this is not masked (it would match anywhere)
# Spaced-out forms only for secrets this long: "1.2.3.4" must stay readable in a log.
MIN_SPACED = 8
MAX_SPACE = 3  # whitespace characters between two of a spaced-out secret's characters

# Base64 characters that depend only on the secret when it starts k bytes (mod 3) into a
# longer base64-encoded string: the first group's leading characters mix in the bytes before.
_SKIP = {0: 0, 1: 2, 2: 3}


def _base64_forms(raw: bytes) -> set[str]:
    forms: set[str] = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        whole = encode(raw).decode("ascii")
        forms.add(whole)  # padded
        forms.add(whole.rstrip("="))  # unpadded
        for k in (0, 1, 2):
            # The secret k bytes into a longer string: keep the characters made of its
            # bytes only; a last partial group's final character mixes in the next byte.
            text = encode(b"\0" * k + raw).decode("ascii").rstrip("=")
            core = text[_SKIP[k] :]
            if (k + len(raw)) % 3:
                core = core[:-1]
            forms.add(core)
    return forms


def encoded_forms(secret: str) -> set[str]:
    """The secret and the encoded forms of it the log must not show (empty if none)."""
    if not secret:
        return set()
    raw = secret.encode("utf-8")
    forms = {secret, quote(secret), quote(secret, safe=""), quote_plus(secret)}
    forms |= {raw.hex(), raw.hex().upper()}
    forms |= _base64_forms(raw)
    forms.add(secret[::-1])
    # The plain value is always masked (the assignment already applies the minimum
    # length to it); derived forms only when long enough to be specific.
    return {secret} | {f for f in forms if len(f) >= MIN_FORM}


def spaced_pattern(secrets: Iterable[str]) -> tuple[re.Pattern[str] | None, int]:
    """One regex for the spaced-out forms of ``secrets`` (and their reverses) and the
    length of the longest text it can match; (None, 0) when no secret is long enough.

    Branches are ordered longest secret first, so at a given start the regex reports
    the longest form there (a shorter secret matching there is a prefix of it).
    """
    texts = sorted(
        {t for s in secrets if len(s) >= MIN_SPACED for t in (s, s[::-1])},
        key=lambda t: (-len(t), t),
    )
    branches: list[str] = []
    for i, text in enumerate(texts):
        chars = [re.escape(c) for c in text]
        branches.append(rf"\s{{1,{MAX_SPACE}}}".join(chars))
        # One punctuation character, the same between every pair (a back-reference).
        sep = f"(?P<sep{i}>[^\\sA-Za-z0-9])"
        branches.append(chars[0] + sep + f"(?P=sep{i})".join(chars[1:]))
    if not branches:
        return None, 0
    longest = max(len(t) + (len(t) - 1) * MAX_SPACE for t in texts)
    return re.compile("|".join(branches)), longest


def _occurrences(
    text: str, forms: list[str], spaced: re.Pattern[str] | None, pos: int = 0
) -> list[tuple[int, int]]:
    """Every (start, end) of every form in ``text`` starting at ``pos`` or later,
    overlapping ones included."""
    found: list[tuple[int, int]] = []
    for form in forms:
        i = text.find(form, pos)
        while i != -1:
            found.append((i, i + len(form)))
            i = text.find(form, i + 1)
    if spaced is not None:
        match = spaced.search(text, pos)
        while match is not None:  # from each start on: overlapping occurrences too
            found.append(match.span())
            match = spaced.search(text, match.start() + 1)
    found.sort()
    return found


class Masker:
    """Replaces every occurrence of the given secrets (and their encodings) with ``[MASKED]``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        secrets = list(secrets)
        forms: set[str] = set()
        for s in secrets:
            forms |= encoded_forms(s)
        self._forms = sorted(forms, key=len, reverse=True)
        self._spaced, spaced_len = spaced_pattern(secrets)
        # Every form fits in _hold + 1 characters: what may still start a secret.
        self._hold = max([len(f) for f in self._forms] + [spaced_len, 1]) - 1
        self._buf = ""  # raw text: context already emitted, then text not yet emitted
        self._done = 0  # how many characters at the start of _buf were already emitted
        self._mask_end = 0  # where the last emitted mask ends, relative to _buf (<= _done)
        # Where the next scan starts, relative to _buf: every occurrence starting before
        # it was complete at the last emit and is emitted whole already.
        self._scanned = 0

    def _emit(self, limit: int) -> str:
        """Emit ``_buf[_done:cut]`` masked; cut = limit, or further to finish a mask.

        Occurrences starting before ``limit`` are complete (a form is at most
        ``_hold + 1`` characters long); ones starting later wait for more text, unless
        they overlap a mask already written, which then simply goes on.
        """
        buf, done = self._buf, self._done
        out: list[str] = []
        mask_end = self._mask_end  # end of the current (last written) mask
        for start, end in _occurrences(buf, self._forms, self._spaced, self._scanned):
            if end <= done:
                continue  # emitted already
            if start < mask_end:
                mask_end = max(mask_end, end)  # overlaps the current mask: one mask
                continue
            if start >= limit:
                break  # may not be complete yet
            out.append(buf[max(mask_end, done) : start])
            out.append(MASK)
            mask_end = end
        cut = max(limit, mask_end, done)
        out.append(buf[max(mask_end, done) : cut])
        keep = max(cut - self._hold, 0)  # context: occurrences may start before the cut
        self._buf = buf[keep:]
        self._done = cut - keep
        self._mask_end = max(mask_end - keep, 0)
        # Occurrences starting before len(buf) - _hold were complete in this buffer (and
        # so were all the forms starting there): a later scan need not look at them.
        self._scanned = max(min(limit, len(buf) - self._hold) - keep, 0)
        return "".join(out)

    def feed(self, text: str) -> str:
        """Masked text that is safe to emit now."""
        if not self._forms:
            return text
        self._buf += text
        return self._emit(max(len(self._buf) - self._hold, self._done))

    def flush(self) -> str:
        """Everything held back, masked (at the end of the stream)."""
        if not self._forms:
            return ""
        rest = self._emit(len(self._buf))
        self._buf, self._done, self._mask_end, self._scanned = "", 0, 0, 0
        return rest
