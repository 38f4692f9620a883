"""Math-Verify in killable workers: right verdicts, and a hanging input cut at the deadline."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from vlaa_data.rewards.math_pool import MathCheck, MathVerifier, decide_plainly

# Sympy evaluates this tower while comparing it with 3, and does not come back for minutes.
HANGS = "$9^{9^{9^{9}}}$"


@pytest.fixture(scope="module")
def verifier() -> Iterator[MathVerifier]:
    with MathVerifier(workers=2, deadline_s=1.5, retry_deadline_s=2.0) as running:
        running.check("$x$", "$x$")  # start the workers (imports) outside the timed tests
        yield running


CASES = [
    ("$\\frac{1}{2}$", "0.5", MathCheck(True)),
    ("0.5", "$\\frac{1}{2}$", MathCheck(True)),
    ("$\\sqrt{2}$", "$2^{1/2}$", MathCheck(True)),
    ("$x^2+2x+1$", "$(x+1)^2$", MathCheck(True)),
    ("2", "3", MathCheck(False)),
    ("$\\pi$", "3.14", MathCheck(False)),
    ("the blue one", "4", MathCheck(None, "gold_unparseable")),  # never scored 1.0
    ("4", "no idea", MathCheck(False, "pred_unparseable")),
    ("$x-1$", "$x \u2212 1$", MathCheck(True)),  # a typeset minus
    ("-2", "\u22122", MathCheck(True)),
    # Formulas without delimiters, as datasets store golds and \boxed{} yields answers: read
    # as LaTeX, never as their last number (which would make these two equal).
    ("y = 3x + 2", "y = 3x - 2", MathCheck(False)),
    ("y = 3x + 2", "y = 2 + 3x", MathCheck(True)),
    ("x - 4", "x + 4", MathCheck(False)),
    ("\\frac{\\sqrt{2}}{2}", "\\sqrt{2}/2", MathCheck(True)),
    ("12", "12 apples", MathCheck(True)),
]


@pytest.mark.parametrize(("gold", "pred", "expected"), CASES)
def test_verdicts(verifier: MathVerifier, gold: str, pred: str, expected: MathCheck) -> None:
    assert verifier.check(gold, pred) == expected


def test_a_hanging_input_is_cut_at_the_deadline_and_the_pool_goes_on(
    verifier: MathVerifier,
) -> None:
    started = time.monotonic()
    results = verifier.check_many([("3", HANGS), ("2", "2"), ("5", "$\\frac{10}{2}$")])
    elapsed = time.monotonic() - started
    assert results == [MathCheck(None, "timeout"), MathCheck(True), MathCheck(True)]
    # The deadline, then the second deadline on a fresh worker (whose start, imports of sympy,
    # takes seconds on a loaded machine); never the minutes of the hang.
    assert elapsed < 1.5 + 2.0 + 10.0
    # The killed worker was replaced: the pool still answers.
    assert verifier.check_many([("7", "7")] * 4) == [MathCheck(True)] * 4


def test_a_check_that_overruns_once_is_decided_on_its_second_try() -> None:
    """On a loaded machine any check can overrun its deadline; the verdict must not change."""
    pairs = [("$x^2+2x+1$", "$(x+1)^2$"), ("$\\sqrt{2}$", "$2^{1/2}$"), ("$\\pi$", "3.14")]
    with MathVerifier(workers=1, deadline_s=0.001, retry_deadline_s=60.0) as running:
        results = running.check_many(pairs)
    assert results == [MathCheck(True), MathCheck(True), MathCheck(False)]


PLAIN_PAIRS = [
    ("3", "3"),
    ("3", "$3$"),
    ("3", "3.0"),
    ("3", "4"),
    ("-2", "2"),
    ("\\frac{1}{2}", "0.5"),
    ("\\frac{1}{2}", "1/2"),
    ("$\\dfrac{3}{4}$", "0.75"),
    ("\\frac{1}{3}", "0.34"),
    ("\\frac{2}{3}", "3/4"),
    ("12.5", "25/2"),
    ("0.1", "0.10"),
    ("7", "7/1"),
    ("60°", "60"),
    ("$60^\\circ$", "60 degrees"),
    ("60°", "$61^{\\circ}$"),
]


@pytest.mark.parametrize(("gold", "pred"), PLAIN_PAIRS)
def test_plain_numbers_decided_without_math_verify_agree_with_it(gold: str, pred: str) -> None:
    from math_verify import parse, verify

    plain = decide_plainly(gold, pred)
    assert plain is not None
    assert plain == verify(parse(gold), parse(pred))


@pytest.mark.parametrize(
    ("gold", "pred"),
    [
        ("\\frac{1}{3}", "0.333333"),  # equal at 6 places: Math-Verify's call
        ("1,000", "1000"),  # a thousands separator, or a set: Math-Verify's call
        ("50\\%", "0.5"),
        ("x", "x"),
        ("\\frac{1}{0}", "1"),
    ],
)
def test_anything_less_plain_is_left_to_math_verify(gold: str, pred: str) -> None:
    assert decide_plainly(gold, pred) is None
