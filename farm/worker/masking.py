"""Masking secrets in a log stream before it leaves the worker.

Output arrives in arbitrary chunks, so a secret can straddle two of them: the
masker holds back the last ``len(longest secret) - 1`` characters until more
text (or the end) shows whether they start a secret.
"""

from __future__ import annotations

from collections.abc import Iterable

MASK = "[MASKED]"


class Masker:
    """Replaces every occurrence of the given values with ``[MASKED]``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret containing another is masked whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._hold = max((len(s) for s in self._secrets), default=1) - 1
        self._pending = ""

    def _mask(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    def feed(self, text: str) -> str:
        """Masked text that is safe to emit now."""
        if not self._secrets:
            return text
        masked = self._mask(self._pending + text)
        if self._hold == 0:
            self._pending = ""
            return masked
        cut = max(len(masked) - self._hold, 0)
        # Never cut inside a mask we just wrote: that part is already safe.
        idx = masked.rfind(MASK, 0, cut + len(MASK))
        if idx != -1 and idx < cut < idx + len(MASK):
            cut = idx + len(MASK)
        self._pending = masked[cut:]
        return masked[:cut]

    def flush(self) -> str:
        """Everything held back, masked (at the end of the stream)."""
        rest, self._pending = self._mask(self._pending), ""
        return rest
