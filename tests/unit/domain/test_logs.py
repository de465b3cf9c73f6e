"""The log-chunk rule: cap, marker, and resent chunks stored once."""

from __future__ import annotations

from farm.domain.logs import fit_chunk, truncation_marker


def test_chunks_append_until_the_cap_then_the_marker() -> None:
    assert fit_chunk(0, "hello\n", 100) == ("hello\n", 6)
    text, size = fit_chunk(95, "0123456789", 100) or ("", 0)
    assert text == "01234" + truncation_marker(100) and size == 100
    assert fit_chunk(100, "more", 100) is None


def test_a_resent_chunk_is_stored_once() -> None:
    # The API stored 6 bytes ("hello\n") but its answer was lost; the worker re-sends
    # from offset 0 with more output appended.
    assert fit_chunk(6, "hello\nworld\n", 100, offset=0) == ("world\n", 12)
    assert fit_chunk(12, "world\n", 100, offset=6) is None  # all of it was stored already
    assert fit_chunk(12, "next\n", 100, offset=12) == ("next\n", 17)
    assert fit_chunk(12, "next\n", 100) == ("next\n", 17)  # no offset: append as before


def test_offsets_count_utf8_bytes() -> None:
    stored = "é\n"  # 3 bytes
    assert fit_chunk(len(stored.encode()), stored + "ü\n", 100, offset=0) == ("ü\n", 6)
