"""Secrets never leave the worker, whatever the chunking of the output."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from farm.worker.masking import MASK, Masker


def run(secrets: list[str], chunks: list[str]) -> str:
    m = Masker(secrets)
    return "".join(m.feed(c) for c in chunks) + m.flush()


def test_masks_whole_and_split_secrets() -> None:
    assert run(["hunter2hunter2"], ["pass=hunter2hunter2\n"]) == f"pass={MASK}\n"
    assert run(["hunter2hunter2"], ["pass=hun", "ter2hun", "ter2 ok"]) == f"pass={MASK} ok"


def test_no_secrets_passes_text_through_at_once() -> None:
    m = Masker([])
    assert m.feed("abc") == "abc"


def test_longest_secret_wins() -> None:
    assert run(["abcd", "abcdefgh"], ["xabcdefghx"]) == f"x{MASK}x"


@given(
    secret=st.text(alphabet="abcxyz", min_size=4, max_size=12),
    prefix=st.text(alphabet="abcxyz \n", max_size=30),
    suffix=st.text(alphabet="abcxyz \n", max_size=30),
    cuts=st.lists(st.integers(min_value=0, max_value=80), max_size=6),
)
def test_secret_never_survives_any_chunking(
    secret: str, prefix: str, suffix: str, cuts: list[int]
) -> None:
    text = prefix + secret + suffix
    points = sorted({min(c, len(text)) for c in cuts})
    chunks = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    out = run([secret], chunks)
    assert secret not in out
    assert out == text.replace(secret, MASK)
