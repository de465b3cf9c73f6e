"""textstats: small, dependency-free text statistics."""

from textstats.core import Stats, analyze, top_words, words

__all__ = ["Stats", "analyze", "top_words", "words"]
__version__ = "1.0.0"
