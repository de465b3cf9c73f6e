import pytest

from textstats import analyze, top_words, words


def test_words_splits_and_lowercases():
    assert words("Hello, World! It's a well-known fact.") == [
        "hello", "world", "it's", "a", "well-known", "fact"
    ]


def test_words_unicode():
    assert words("Grüße aus Köln — ça va?") == ["grüße", "aus", "köln", "ça", "va"]


def test_analyze_counts():
    s = analyze("one two\nthree two\n")
    assert (s.lines, s.words, s.chars, s.unique_words) == (2, 4, 18, 3)
    assert s.average_word_length == pytest.approx((3 + 3 + 5 + 3) / 4)


def test_analyze_last_line_without_newline_counts():
    assert analyze("a\nb").lines == 2


def test_analyze_empty():
    s = analyze("")
    assert (s.lines, s.words, s.chars, s.unique_words, s.average_word_length) == (0, 0, 0, 0, 0.0)


def test_top_words_orders_by_count_then_alphabet():
    assert top_words("b a c b a b", 2) == [("b", 3), ("a", 2)]
    assert top_words("y x", 5) == [("x", 1), ("y", 1)]


def test_top_words_stopwords_and_bounds():
    assert top_words("the cat the hat", 1, stopwords=frozenset({"the"})) == [("cat", 1)]
    assert top_words("x", 0) == []
    with pytest.raises(ValueError):
        top_words("x", -1)
