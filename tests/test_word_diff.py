"""The rewrite step's filters: which texts mention a given text, and how many words changed."""

from __future__ import annotations

import pytest

from vlaa_data.steps.rewrite import mentions_given_text, words_changed


@pytest.mark.parametrize(
    ("text", "mentions"),
    [
        ("The caption says there are three cubes.", True),
        ("Based on the description, it is red.", True),
        ("The rationale explains the angle.", True),
        ("According to the provided text, the bus is late.", True),
        ("The given text mentions a dog.", True),
        ("Captions aside, three.", True),
        ("The text on the sign reads STOP.", False),
        ("The text in the image is blurry.", False),
        ("I see three cubes and a sphere.", False),
        ("A textbook lies on the table.", False),
        ("He described it well.", False),
    ],
)
def test_mentions_given_text(text: str, mentions: bool) -> None:
    assert mentions_given_text(text) is mentions


@pytest.mark.parametrize(
    ("before", "after", "changed"),
    [
        ("a b c", "a b c", 0),
        ("the caption shows a cube", "the image shows a cube", 1),  # one word replaced
        ("the caption says there are", "the image shows", 4),  # 4 words for 2: the longer side
        ("a b c", "a b c d e", 2),  # insertions count each word
        ("a b c d e", "a e", 3),  # so do deletions
        ("line one\nline two", "line one line two", 0),  # whitespace is not a word
        ("", "", 0),
        ("x y", "y x", 2),  # a moved word is deleted here and inserted there
    ],
)
def test_words_changed(before: str, after: str, changed: int) -> None:
    assert words_changed(before, after) == changed


def test_the_count_is_symmetric_enough_to_be_a_limit() -> None:
    before = " ".join(f"w{i}" for i in range(100))
    after = before.replace("w50", "z50").replace("w51", "z51")
    assert words_changed(before, after) == words_changed(after, before) == 2
