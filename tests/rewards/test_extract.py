"""Answer extraction: one table per reader, adversarial rows included."""

from __future__ import annotations

import pytest

from vlaa_data.rewards.extract import (
    final_answer,
    read_box,
    read_choice,
    read_number,
    split_completion,
)


def answer_of(text: str, reasoning: str | None = None) -> str | None:
    return final_answer(split_completion(text, reasoning).answer)


SPLITS = [
    # (completion, reasoning field, expected reasoning, expected answer region)
    ("<think>count: 3</think><answer>3</answer>", None, "count: 3", "3"),
    ("<think>count</think>\n\nThere are 3.", None, "count", "There are 3."),
    ("count them: 3\n</think>\n<answer> 3 </answer>", None, "count them: 3", "3"),  # lone close
    ("The answer is 4.", "I count four.", "I count four.", "The answer is 4."),
    ("plain reply: 7", None, "", "plain reply: 7"),
    ("<think>the answer is 5, so <answer>5</answer>", None, None, None),  # never closed
    ("<think>a</think><answer>1</answer><answer>2</answer>", None, "a", "2"),  # last block
    ("<think><answer>9</answer></think><answer>4</answer>", None, "<answer>9</answer>", "4"),
    ("<think>x</think><answer>12", None, "x", "12"),  # cut off inside its answer block
    ("<think>x</think>", None, "x", ""),
]


@pytest.mark.parametrize(("text", "field", "reasoning", "region"), SPLITS)
def test_split_completion(
    text: str, field: str | None, reasoning: str | None, region: str | None
) -> None:
    split = split_completion(text, field)
    assert split.answer == region
    if reasoning is not None:
        assert split.reasoning == reasoning


FINALS = [
    ("<think>t</think><answer>\\boxed{\\frac{1}{2}}</answer>", "\\frac{1}{2}"),
    ("<think>t</think>so \\boxed{3} then \\boxed{\\sqrt{x^{2}}}", "\\sqrt{x^{2}}"),
    # A boxed answer in the reasoning and a different one in the answer: the answer's wins.
    ("<think>maybe \\boxed{7}</think><answer>\\boxed{8}</answer>", "8"),
    ("<think>maybe \\boxed{7}</think><answer>8</answer>", "8"),
    ("<think>t</think>Answer: 42", "42"),
    ("<think>t</think>**Answer:** (B) blue", "(B) blue"),
    ("<think>t</think>**Answer**: 3 apples.", "3 apples"),
    ("<think>t</think>Reasoning done. The answer is $x = 2$.", "$x = 2$"),
    ("<think>t</think>First answer: 1\nFinal answer: 2", "2"),
    ("<think>t</think><answer> **C** </answer>", "C"),
    # The right answer only inside <think>: nothing outside it to read.
    ("<think>The answer is 5.</think>", None),
    ("<think>The answer is 5.", None),
    ("<think>t</think><answer></answer>", None),
]


@pytest.mark.parametrize(("text", "expected"), FINALS)
def test_final_answer(text: str, expected: str | None) -> None:
    assert answer_of(text) == expected


CHOICES = [
    ("C", "C"),
    ("(C)", "C"),
    ("C)", "C"),
    ("[c]", "C"),
    ("Option C", "C"),
    ("option (d)", "D"),
    ("C. a red cube", "C"),
    ("**C**", "C"),
    ("**B.** the sphere", "B"),
    ("The correct option is (B) because it is red", "B"),
    ("I pick option A over option D", "D"),  # the last marked letter
    # Letters inside ordinary words are never options.
    ("A large sphere is behind the cube", None),
    ("a", "A"),  # a lone letter is an option, lower case too
    ("I think it is a cylinder", None),
    ("Apples", None),
    ("", None),
    (None, None),
]


@pytest.mark.parametrize(("answer", "expected"), CHOICES)
def test_read_choice(answer: str | None, expected: str | None) -> None:
    assert read_choice(answer) == expected


def test_choice_through_the_whole_completion() -> None:
    text = "<think>A is wrong, (B) too</think><answer>The answer is C.</answer>"
    assert read_choice(answer_of(text)) == "C"
    assert read_choice(answer_of("<think>It is (B).</think>A large red ball")) is None


NUMBERS = [
    ("3", 3.0),
    ("-4", -4.0),
    ("+2.5", 2.5),
    ("−7", -7.0),  # a typographic minus
    ("1,234", 1234.0),
    ("1,234,567.5", 1234567.5),
    ("$1,200", 1200.0),
    ("12 cm", 12.0),
    ("45%", 45.0),
    (".5", 0.5),
    ("3/4", 0.75),
    ("There are 3 red and 2 blue, so 5 in total", 5.0),
    ("three", 3.0),
    ("Twelve cubes", 12.0),
    ("none of them", None),
    ("x2", None),  # part of a word, not a number
    ("1/0", None),
    ("", None),
]


@pytest.mark.parametrize(("answer", "expected"), NUMBERS)
def test_read_number(answer: str, expected: float | None) -> None:
    assert read_number(answer) == expected


BOXES = [
    ("[10, 20, 30, 40]", (10.0, 20.0, 30.0, 40.0)),
    ("[0.1, 0.2, 0.35, 0.4]", (0.1, 0.2, 0.35, 0.4)),
    ("(-5, -3.5, 12, 8)", (-5.0, -3.5, 12.0, 8.0)),
    ("The box is [1,2,3,4] or rather [5, 6, 7, 8].", (5.0, 6.0, 7.0, 8.0)),
    ("[1, 2, 3]", None),
    ("[a, b, c, d]", None),
    ("", None),
]


@pytest.mark.parametrize(("answer", "expected"), BOXES)
def test_read_box(answer: str, expected: tuple[float, ...] | None) -> None:
    assert read_box(answer) == expected
