"""Rule verdicts: one table of answers, golds and the verdict rules reach (or leave open)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vlaa_data.rewards.math_pool import MathVerifier
from vlaa_data.rewards.verdict import Case, RuleVerifier


@pytest.fixture(scope="module")
def rules() -> Iterator[RuleVerifier]:
    with MathVerifier(workers=1, deadline_s=5.0) as math:
        yield RuleVerifier(math, iou_threshold=0.5)


TABLE = [
    # reward type, answer text, gold, image size -> verdict, method, extracted, note
    (
        "digit",
        "There are **4** spheres.",
        "4",
        None,
        "correct",
        "digit",
        "There are **4** spheres",
        None,
    ),
    ("digit", "Answer: five", "5", None, "correct", "digit", "five", None),
    ("digit", "Answer: 1,200", "1200", None, "correct", "digit", "1,200", None),
    ("digit", "Answer: 6", "5", None, "incorrect", "digit", "6", None),
    ("digit", "Answer: many", "5", None, "unverifiable", "digit", "many", "no_digit_in_answer"),
    ("digit", "Answer: 3", "several", None, "unverifiable", "digit", "3", "gold_unreadable"),
    ("choice", "The answer is (C).", "C", None, "correct", "choice", "(C)", None),
    ("choice", "**Answer:** B. 45°", "(b)", None, "correct", "choice", "B", None),
    ("choice", "A large sphere is left. Answer: D", "D", None, "correct", "choice", "D", None),
    ("choice", "Answer: A", "C", None, "incorrect", "choice", "A", None),
    ("choice", "Answer: 45°", "B", None, "unverifiable", "choice", "45°", "no_choice_in_answer"),
    ("choice", "Answer: A", "the left one", None, "unverifiable", "choice", "A", "gold_unreadable"),
    ("math", "So $\\boxed{\\frac{1}{2}}$.", "0.5", None, "correct", "math", "\\frac{1}{2}", None),
    ("math", "Answer: $x = 3$", "3", None, "correct", "math", "x = 3", None),
    ("math", "Answer: 4", "3", None, "incorrect", "math", "4", None),
    ("math", "Answer: 3", "\\frac{", None, "unverifiable", "math", "3", "gold_unparseable"),
    (
        "iou",
        "[10, 10, 50, 50]",
        "[10, 10, 50, 50]",
        None,
        "correct",
        "iou",
        "[10, 10, 50, 50]",
        None,
    ),
    (
        "iou",
        "[0.1, 0.2, 0.5, 1.0]",
        "[10, 10, 50, 50]",
        (100, 50),
        "correct",
        "iou",
        "[0.1, 0.2, 0.5, 1.0]",
        None,
    ),
    (
        "iou",
        "[0, 0, 10, 10]",
        "[50, 50, 90, 90]",
        None,
        "incorrect",
        "iou",
        "[0, 0, 10, 10]",
        "low_iou",
    ),
    (
        "iou",
        "Answer: on the left",
        "[1, 1, 5, 5]",
        None,
        "incorrect",
        "iou",
        "on the left",
        "no_box",
    ),
    (
        "iou",
        "[0.1, 0.1, 0.2, 0.2]",
        "[10, 10, 20, 20]",
        None,
        "unverifiable",
        "iou",
        "[0.1, 0.1, 0.2, 0.2]",
        "not_comparable",
    ),
    ("open", "Answer: a dog", "a dog", None, "unverifiable", "rules", "a dog", "open_ended"),
    ("digit", "", "3", None, "incorrect", "digit", None, "no_answer"),
]


@pytest.mark.parametrize(
    ("kind", "answer", "gold", "size", "verdict", "method", "extracted", "note"), TABLE
)
def test_rule_verdicts(
    rules: RuleVerifier, kind, answer, gold, size, verdict, method, extracted, note
) -> None:
    got = rules.decide(Case(kind, answer, gold, size))
    assert (got.verdict, got.method, got.extracted, got.note) == (verdict, method, extracted, note)
    assert got.decided == (verdict != "unverifiable")


def test_a_batch_keeps_its_order_with_math_checked_together(rules: RuleVerifier) -> None:
    cases = [
        Case("math", "Answer: 2", "2"),
        Case("digit", "Answer: 7", "7"),
        Case("math", "Answer: 5", "2"),
        Case("open", "Answer: yes", "yes"),
    ]
    verdicts = [v.verdict for v in rules.decide_many(cases)]
    assert verdicts == ["correct", "correct", "incorrect", "unverifiable"]


def test_the_iou_threshold_decides_a_partial_overlap() -> None:
    case = Case("iou", "[0, 0, 10, 10]", "[0, 0, 10, 16]")  # IoU 0.625
    with MathVerifier(workers=1) as math:
        assert RuleVerifier(math, iou_threshold=0.5).decide(case).verdict == "correct"
        strict = RuleVerifier(math, iou_threshold=0.7).decide(case)
    assert strict.verdict == "incorrect" and strict.score == pytest.approx(0.625)
