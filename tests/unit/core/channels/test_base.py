"""Splitting text at a platform's limit."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from core.channels.base import split_text


def test_short_text_is_one_piece() -> None:
    assert split_text("hello", 4096) == ["hello"]
    assert split_text("", 10) == [""]


def test_long_text_is_cut_at_paragraphs_then_lines_then_words() -> None:
    text = "a" * 30 + "\n\n" + "b" * 30
    assert split_text(text, 40) == ["a" * 30, "b" * 30]
    pieces = split_text("word " * 20, 22)
    assert [piece.strip() for piece in pieces] == ["word word word word"] * 5


def test_a_word_longer_than_the_limit_is_cut_hard() -> None:
    assert split_text("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]


@given(st.text(min_size=1, max_size=3000), st.integers(min_value=2, max_value=500))
def test_no_piece_is_over_the_limit_and_nothing_but_spacing_is_lost(text: str, limit: int) -> None:
    pieces = split_text(text, limit)
    assert all(len(piece) <= limit for piece in pieces)
    assert "".join(text.split()) == "".join("".join(pieces).split())
