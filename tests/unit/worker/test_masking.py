"""Secrets never leave the worker, in plain or encoded form, whatever the chunking."""

from __future__ import annotations

import base64
import binascii
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from farm.worker.masking import MASK, Masker, encoded_forms

SECRET = "s3cr3t/t0ken+v@lue ok"  # has characters every URL encoding changes


def run(secrets: list[str], chunks: list[str]) -> str:
    m = Masker(secrets)
    return "".join(m.feed(c) for c in chunks) + m.flush()


def split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({min(c, len(text)) for c in cuts})
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]


def oracle(secrets: list[str], text: str) -> str:
    """The unchunked answer: every occurrence of every form, overlapping runs merged."""
    spans = sorted(
        (i, i + len(f))
        for s in secrets
        for f in encoded_forms(s)
        for i in range(len(text))
        if text.startswith(f, i)
    )
    out, pos, end = [], 0, -1
    for a, b in spans:
        if a < end:
            end = max(end, b)
            continue
        if end > pos:
            pos = end
        out.append(text[pos:a] + MASK)
        pos, end = a, b
    out.append(text[max(pos, end) :])
    return "".join(out)


def test_masks_whole_and_split_secrets() -> None:
    assert run(["hunter2hunter2"], ["pass=hunter2hunter2\n"]) == f"pass={MASK}\n"
    assert run(["hunter2hunter2"], ["pass=hun", "ter2hun", "ter2 ok"]) == f"pass={MASK} ok"


def test_no_secrets_passes_text_through_at_once() -> None:
    m = Masker([])
    assert m.feed("abc") == "abc"
    assert m.flush() == ""


def test_longest_secret_wins() -> None:
    assert run(["abcd", "abcdefgh"], ["xabcdefghx"]) == f"x{MASK}x"


def test_overlapping_occurrences_are_one_mask() -> None:
    assert run(["abcabc"], ["xabcabcabcx"]) == f"x{MASK}x"  # str.replace would leave "abc"
    assert run(["abcabc"], ["xabcab", "cab", "cx"]) == f"x{MASK}x"
    assert run(["abcd"], ["abcdabcd"]) == MASK + MASK  # touching, not overlapping


def b64_forms(raw: bytes) -> dict[str, str]:
    return {
        "std": base64.b64encode(raw).decode(),
        "std-nopad": base64.b64encode(raw).decode().rstrip("="),
        "url": base64.urlsafe_b64encode(raw).decode(),
        "url-nopad": base64.urlsafe_b64encode(raw).decode().rstrip("="),
    }


ENCODED = {
    "plain": SECRET,
    **b64_forms(SECRET.encode()),
    "quote": quote(SECRET),
    "quote-safe-none": quote(SECRET, safe=""),
    "quote_plus": quote_plus(SECRET),
    "hex": SECRET.encode().hex(),
    "HEX": SECRET.encode().hex().upper(),
}


@pytest.mark.parametrize("form", sorted(ENCODED))
def test_each_encoded_form_is_masked(form: str) -> None:
    text = f"token: {ENCODED[form]}\n"
    assert run([SECRET], [text]) == f"token: {MASK}\n"


@pytest.mark.parametrize("form", sorted(ENCODED))
def test_each_encoded_form_is_masked_across_a_chunk_boundary(form: str) -> None:
    value = ENCODED[form]
    for cut in range(1, len(value)):
        chunks = ["token: " + value[:cut], value[cut:] + "\n"]
        assert run([SECRET], chunks) == f"token: {MASK}\n", (form, cut)


def test_url_encoded_forms_differ_from_the_plain_value() -> None:
    # Otherwise the URL-encoding tests above would only test the plain value again.
    assert len({ENCODED["plain"], ENCODED["quote"], ENCODED["quote_plus"]}) == 3


@pytest.mark.parametrize("lead", [b"", b"A", b"AB", b"user:", b"Basic xyz"])
@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode])
def test_secret_inside_a_longer_base64_string_is_masked(lead: bytes, encode: object) -> None:
    # e.g. an Authorization header: base64("user:" + token + "...") shows no plain
    # base64 of the token; the three alignments catch it wherever it starts.
    assert callable(encode)
    blob = encode(lead + SECRET.encode() + b"-and-more").decode()
    out = run([SECRET], [f"Authorization: Basic {blob}\n"])
    assert MASK in out
    # What stays visible cannot be decoded back to the secret.
    visible = out.replace(MASK, " ")
    assert SECRET not in visible
    for piece in visible.split():
        try:
            decoded = base64.b64decode(piece + "=" * (-len(piece) % 4), altchars=b"-_")
        except (binascii.Error, ValueError):
            continue
        assert SECRET.encode()[:6] not in decoded


def test_secret_inside_a_longer_base64_string_across_chunks() -> None:
    blob = base64.b64encode(b"user:" + SECRET.encode() + b"!").decode()
    text = f"auth {blob}\n"
    whole = run([SECRET], [text])
    assert MASK in whole
    for cut in range(len(text)):
        assert run([SECRET], [text[:cut], text[cut:]]) == whole


def test_short_encoded_forms_are_not_masked_but_the_plain_value_is() -> None:
    forms = encoded_forms("abcd")
    assert "abcd" in forms
    assert all(len(f) >= 4 for f in forms)
    assert encoded_forms("") == set()


def test_non_ascii_secret_encodings() -> None:
    secret = "pässwörd€"
    raw = secret.encode()
    for value in (base64.b64encode(raw).decode(), quote(secret), raw.hex()):
        assert run([secret], [f"x {value} y"]) == f"x {MASK} y"


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
    out = run([secret], split(text, cuts))
    assert secret not in out
    assert out == oracle([secret], text)


@given(
    secret=st.text(alphabet="ab+/=%", min_size=4, max_size=8),
    form=st.sampled_from(["b64", "url", "hex", "quote", "plus"]),
    prefix=st.text(alphabet="abAB+/=% ", max_size=12),
    cuts=st.lists(st.integers(min_value=0, max_value=60), max_size=5),
)
def test_encoded_secret_never_survives_any_chunking(
    secret: str, form: str, prefix: str, cuts: list[int]
) -> None:
    raw = secret.encode()
    value = {
        "b64": base64.b64encode(raw).decode(),
        "url": base64.urlsafe_b64encode(raw).decode(),
        "hex": raw.hex(),
        "quote": quote(secret, safe=""),
        "plus": quote_plus(secret),
    }[form]
    text = prefix + value + "\n"
    out = run([secret], split(text, cuts))
    assert value not in out
    assert out == oracle([secret], text)
