"""Reversed and spaced-out secrets are masked too, whatever the chunking."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from farm.worker.masking import MASK, MAX_SPACE, MIN_SPACED, Masker, encoded_forms

SECRET = "s3cr3t-t0ken-value"


def run(secrets: list[str], chunks: list[str]) -> str:
    m = Masker(secrets)
    return "".join(m.feed(c) for c in chunks) + m.flush()


def split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({min(c, len(text)) for c in cuts})
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]


def spaced_end(text: str, i: int, secret: str) -> int | None:
    """Where a spaced-out ``secret`` starting at ``i`` ends (written without regexes)."""
    best: int | None = None
    for mode in ("space", "punct"):
        if not text.startswith(secret[0], i):
            return None
        j, sep, ok = i + 1, "", True
        for c in secret[1:]:
            if mode == "space":
                k = j
                while k < len(text) and k - j < MAX_SPACE and text[k].isspace():
                    k += 1
                ok = k > j
                j = k
            else:  # one punctuation character (not space, not an ASCII letter or digit)
                ch = text[j] if j < len(text) else "a"
                ok = not ch.isspace() and not (ch.isascii() and ch.isalnum())
                ok = ok and ch == (sep or ch)
                sep = sep or ch
                j += 1
            if not ok or not text.startswith(c, j):
                ok = False
                break
            j += 1
        if ok:
            best = max(best or 0, j)
    return best


def oracle(secret: str, text: str) -> str:
    """The unchunked answer: every fixed and spaced occurrence, overlapping runs merged."""
    spans = [
        (i, i + len(f))
        for f in encoded_forms(secret)
        for i in range(len(text))
        if text.startswith(f, i)
    ]
    if len(secret) >= MIN_SPACED:
        for s in (secret, secret[::-1]):
            for i in range(len(text)):
                end = spaced_end(text, i, s)
                if end is not None:
                    spans.append((i, end))
    spans.sort()
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


FORMS = {
    "reversed": SECRET[::-1],
    "spaces": " ".join(SECRET),
    "two-spaces": "  ".join(SECRET),
    "tabs": "\t".join(SECRET),
    "lines": "\n".join(SECRET),  # fold -w1
    "crlf": "\r\n".join(SECRET),
    "dashes": "-".join(SECRET),
    "dots": ".".join(SECRET),
    "underscores": "_".join(SECRET),
    "slashes": "/".join(SECRET),
    "reversed-spaces": " ".join(SECRET[::-1]),
    "reversed-dots": ".".join(SECRET[::-1]),
}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_each_new_form_is_masked(form: str) -> None:
    assert run([SECRET], [f"got: {FORMS[form]} !\n"]) == f"got: {MASK} !\n"


@pytest.mark.parametrize("form", sorted(FORMS))
def test_each_new_form_is_masked_across_a_chunk_boundary(form: str) -> None:
    value = FORMS[form]
    for cut in range(1, len(value)):
        chunks = ["got: " + value[:cut], value[cut:] + " !\n"]
        assert run([SECRET], chunks) == f"got: {MASK} !\n", (form, cut)


def test_every_character_in_its_own_chunk() -> None:
    text = f"a {' '.join(SECRET)} b {SECRET[::-1]} c\n"
    assert run([SECRET], list(text)) == f"a {MASK} b {MASK} c\n"


def test_mixed_or_wide_separators_and_short_secrets_stay_readable() -> None:
    mixed = "s-3.c-r.3-t" + "".join(SECRET[6:])
    assert run([SECRET], [mixed]) == mixed  # one separator, repeated: not this
    wide = "    ".join(SECRET)  # more than MAX_SPACE spaces
    assert run([SECRET], [wide]) == wide
    # Spaced-out forms need MIN_SPACED characters: an IP address is not a secret's shadow.
    assert run(["1234567"], ["ip 1.2.3.4.5.6.7 x"]) == "ip 1.2.3.4.5.6.7 x"
    assert run(["1234567"], ["7654321"]) == MASK  # reversed still is


def test_a_secret_with_regex_characters_is_literal() -> None:
    secret = "a.b*c+d?(e)[f]"
    assert run([secret], ["x " + " ".join(secret) + " y"]) == f"x {MASK} y"
    assert run([secret], ["x " + " ".join("aXbbc+d?(e)[f]") + " y"]).count(MASK) == 0


def test_many_secrets_compile_into_one_pattern() -> None:
    secrets = [f"secret-number-{i:04d}" for i in range(300)]
    assert run(secrets, [" ".join(secrets[123]) + "\n"]) == MASK + "\n"


@given(
    secret=st.text(alphabet="abcxy-", min_size=MIN_SPACED, max_size=12),
    sep=st.sampled_from([" ", "  ", "\n", "\t", "-", ".", "_", "/"]),
    backwards=st.booleans(),
    prefix=st.text(alphabet="abcxy -.\n", max_size=20),
    suffix=st.text(alphabet="abcxy -.\n", max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=80), max_size=6),
)
def test_spaced_secret_never_survives_any_chunking(
    secret: str, sep: str, backwards: bool, prefix: str, suffix: str, cuts: list[int]
) -> None:
    value = sep.join(secret[::-1] if backwards else secret)
    text = prefix + value + suffix
    out = run([secret], split(text, cuts))
    assert value not in out
    assert out == run([secret], [text]) == oracle(secret, text)
