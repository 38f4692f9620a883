"""The shortcuts give Math-Verify's own verdicts: each pair is checked by plain Math-Verify in
this process and by the worker pool, where the shortcuts are installed."""

from __future__ import annotations

import logging
import random

import pytest
from sympy import Eq, Rational, sqrt, symbols

from vlaa_data.rewards import math_speedups
from vlaa_data.rewards.math_pool import MathVerifier, check_pair
from vlaa_data.rewards.math_speedups import _clearly_nonzero, _lines_differ

x, y = symbols("x y")
_MATRIX = "\\begin{{pmatrix}} 1 & 2 \\\\ 3 & {} \\end{{pmatrix}}"

TRICKY = [
    ("y = 3x + 2", "2y = 6x + 4"),  # the same line, scaled
    ("y = 3x + 2", "3x + 2 = y"),  # sides swapped
    ("y = 3x + 2", "y = 3x - 2"),
    ("y = 3x + 2", "3x + 2"),  # the right-hand side alone
    ("y = 3x + 2", "x = 3y + 2"),
    ("y = 3x + 2", "y = \\sqrt{2}x + 2"),
    ("x = 2", "2 = x"),
    ("x = 2", "x = 3"),
    ("x^2 = 4", "x = 2"),
    ("x^2 - 5x + 6 = 0", "(x-2)(x-3) = 0"),
    ("x^2 - 5x + 6 = 0", "(x-2)(x-4) = 0"),
    ("x + y = 1", "y = 1 - x"),
    ("x + y = 1", "x - y = 1"),
    ("\\frac{\\sqrt{8}}{2}", "\\sqrt{2}"),
    ("\\frac{3\\sqrt{2}}{5}", "3\\sqrt{3}/5"),
    ("\\sin^2 x + \\cos^2 x", "1"),
    ("\\sin^2 x - \\cos^2 x", "1"),
    ("(x+1)^2", "x^2 + 2x + 1"),
    ("(x+1)^2", "x^2 + x + 1"),
    ("\\frac{x^2-1}{x-1}", "x + 1"),
    ("\\frac{1}{x-1}", "\\frac{1}{x+1}"),
    ("\\frac{1}{3}", "0.333333"),
    ("\\frac{1}{3}", "0.33"),
    ("2\\pi", "6.283185"),
    ("\\pi r^2", "r^2 \\pi"),
    ("\\pi r^2", "2 \\pi r"),
    ("x < 3", "3 > x"),
    ("x \\le 3", "x < 3"),
    ("[1, 3)", "[1, 3)"),
    ("[1, 3)", "(1, 3]"),
    ("\\{1, 2\\}", "\\{2, 1\\}"),
    ("50\\%", "0.5"),
    (_MATRIX.format(4), _MATRIX.format(5)),
    ("a + b", "b + a"),
    ("a + b", "a - b"),
    ("\\log(xy)", "\\log x + \\log y"),
    ("\\sqrt{x^2}", "x"),
    ("e^{i\\pi}", "-1"),
    ("3", "Answer: $\\frac{6}{2}$"),
    ("\\text{blue}", "\\text{red}"),
]


def _random_pairs(n: int) -> list[tuple[str, str]]:
    rng = random.Random(3)
    pairs = []
    for _ in range(n):
        a, b, m, c = rng.randint(1, 40), rng.randint(2, 9), rng.randint(-5, 5), rng.randint(-9, 9)
        pairs.append((f"\\frac{{{a}\\sqrt{{2}}}}{{{b}}}", f"{a}\\sqrt{{{rng.choice([2, 3])}}}/{b}"))
        pairs.append((f"y = {m}x + {c}", rng.choice([f"y = {c} + {m}x", f"y = {m}x - {c + 1}"])))
    return pairs


def test_verdicts_match_plain_math_verify() -> None:
    from math_verify import parse, verify

    # The reference must be Math-Verify as shipped: nothing may have patched this process.
    assert not math_speedups._installed
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    pairs = TRICKY + _random_pairs(20)
    expected = [check_pair(parse, verify, gold, pred) for gold, pred in pairs]
    with MathVerifier(workers=1, deadline_s=20.0) as pool:
        got = [(c.equal, c.reason) for c in pool.check_many(pairs)]
    mismatches = [(p, e, g) for p, e, g in zip(pairs, expected, got, strict=True) if e != g]
    assert not mismatches
    assert {e for e, _ in expected} >= {True, False}  # the corpus holds both verdicts


@pytest.mark.parametrize(
    ("a", "b", "apart"),
    [
        (3 * sqrt(2) / 5, 3 * sqrt(3) / 5, True),
        (sqrt(8) / 2, sqrt(2), False),
        ((x + 1) ** 2, x**2 + 2 * x + 1, False),
        ((x + 1) ** 2, x**2 + x + 1, True),
        (x, y, True),
        (Rational(1, 3), Rational(1, 3) + Rational(1, 10**12), False),  # too close to call
    ],
)
def test_clearly_nonzero(a: object, b: object, apart: bool) -> None:
    assert _clearly_nonzero(a, b) is apart


@pytest.mark.parametrize(
    ("gold", "pred", "differ"),
    [
        (Eq(y, 3 * x + 2), Eq(2 * y, 6 * x + 4), False),
        (Eq(y, 3 * x + 2), Eq(3 * x + 2, y), False),
        (Eq(y, 3 * x + 2), Eq(y, 3 * x - 2), True),
        (Eq(y, 3 * x + 2), Eq(x, 3 * y + 2), True),
        (Eq(x, 2), Eq(x, 3), True),
        (Eq(x**2, 4), Eq(x, 2), False),  # not linear: solve decides
        (Eq(y, sqrt(2) * x), Eq(y, x), False),  # not rational: solve decides
    ],
)
def test_lines_differ(gold: object, pred: object, differ: bool) -> None:
    assert _lines_differ(gold, pred) is differ
