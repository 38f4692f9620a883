"""Math-Verify in killable workers: right verdicts, and a hanging input cut at the deadline."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from vlaa_data.rewards.math_pool import MathCheck, MathVerifier

# Sympy evaluates this tower while comparing it with 3, and does not come back for minutes.
HANGS = "$9^{9^{9^{9}}}$"


@pytest.fixture(scope="module")
def verifier() -> Iterator[MathVerifier]:
    with MathVerifier(workers=2, deadline_s=1.5) as running:
        running.check("1", "1")  # start the workers (imports) outside the timed tests
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
    assert elapsed < 1.5 + 1.0  # the deadline, plus a little; never the minutes of the hang
    # The killed worker was replaced: the pool still answers.
    assert verifier.check_many([("7", "7")] * 4) == [MathCheck(True)] * 4
