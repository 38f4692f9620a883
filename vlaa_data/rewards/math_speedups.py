"""Math-Verify made faster where it is slow, with the verdicts it would give.

Three costs dominate Math-Verify on formulas, and each has a cheaper way to the same answer:

- **Parsing.** latex2sympy's ANTLR parser runs in LL mode, whose full-context prediction
  costs 10-60 ms per expression in pure Python. ANTLR's documented two-stage strategy parses
  in SLL mode first and falls back to LL only when SLL fails; SLL succeeds on the formulas
  answers hold and is about five times faster. And each integer in a formula became a sympy
  number through sympy's string parser (about 1 ms); digits are read as ``Integer`` directly.
- **Proving two expressions different.** Math-Verify's last resort is
  ``simplify(gold - pred).is_zero``, which for unequal expressions costs 30 ms or more only to
  fail. A difference that evaluates to a clearly non-zero number at one point is not zero, so
  simplify cannot make it zero; it is tried only when the value there is zero or cannot be
  computed.
- **Proving two linear equations different.** Equations that differ are compared last by
  ``solve``-ing both, about 50 ms. Two linear equations with rational coefficients have the
  same solutions exactly when one is a multiple of the other, so a pair that is not is
  answered at once; anything else still goes to ``solve``.

``install()`` applies them in the process that runs Math-Verify (the worker pool's
workers). Each patch wraps a function of Math-Verify or latex2sympy and calls it unchanged
whenever its shortcut does not apply; if a future release renames one, that patch is skipped
and Math-Verify runs as it is.
"""

from __future__ import annotations

import random
from typing import Any

__all__ = ["install"]

_installed = False


def install() -> None:
    """Apply the shortcuts once per process."""
    global _installed
    if _installed:
        return
    _installed = True
    _two_stage_parsing()
    _numeric_difference()
    _linear_equations()


def _two_stage_parsing() -> None:
    try:
        from antlr4.atn.PredictionMode import PredictionMode
        from latex2sympy2_extended.latex2sympy2 import _Latex2Sympy
        from sympy import Integer
    except ImportError:
        return
    create_parser, parse = _Latex2Sympy.create_parser, _Latex2Sympy.parse

    def create_sll_parser(self: Any, latex_str: str) -> Any:
        parser = create_parser(self, latex_str)
        if getattr(self, "_sll", False):
            parser._interp.predictionMode = PredictionMode.SLL
        return parser

    def parse_two_stage(self: Any, latex_str: str) -> Any:
        self._sll = True
        try:
            return parse(self, latex_str)
        except Exception:  # an SLL failure is not yet a syntax error: LL decides
            self._sll = False
            return parse(self, latex_str)

    _Latex2Sympy.create_parser = create_sll_parser
    _Latex2Sympy.parse = parse_two_stage

    parse_number = _Latex2Sympy.parse_number

    def parse_integer_directly(self: Any, text: str) -> Any:
        digits = text.replace(",", "")
        if digits.isascii() and digits.isdigit():
            return Integer(int(digits))  # what sympy.Number makes of it, without parse_expr
        return parse_number(self, text)

    _Latex2Sympy.parse_number = parse_integer_directly


def _numeric_difference() -> None:
    from math_verify import grader

    symbolic_eq = grader.sympy_symbolic_eq

    def symbolic_eq_unless_apart(a: Any, b: Any) -> bool:
        if _clearly_nonzero(a, b):
            return False
        return symbolic_eq(a, b)

    grader.sympy_symbolic_eq = symbolic_eq_unless_apart


def _clearly_nonzero(a: Any, b: Any) -> bool:
    """True when ``a - b`` takes a value far from zero at a point: they cannot be equal."""
    try:
        from sympy import Integral, Limit, Product, Rational, Sum

        difference = a - b
        if difference.has(Sum, Product, Integral, Limit):
            return False  # evaluating these at a point can take longer than simplify itself
        symbols = sorted(difference.free_symbols, key=str)
        rng = random.Random(len(symbols))  # the same point every time: verdicts repeat
        point = {s: Rational(rng.randint(1, 997), rng.randint(1, 97)) for s in symbols}
        value = complex(difference.evalf(30, subs=point))
    except Exception:  # matrices, sets, poles, functions sympy cannot evaluate
        return False
    # An identity evaluates to ~1e-30 at 30 digits; nan compares False and falls through.
    return abs(value) > 1e-9


def _linear_equations() -> None:
    from math_verify import grader

    solve_and_compare = grader.sympy_solve_and_compare

    def solve_unless_lines_differ(gold: Any, pred: Any, *args: Any, **kwargs: Any) -> bool:
        if _lines_differ(gold, pred):
            return False
        return solve_and_compare(gold, pred, *args, **kwargs)

    grader.sympy_solve_and_compare = solve_unless_lines_differ


def _lines_differ(gold: Any, pred: Any) -> bool:
    """True for two linear equations with rational coefficients that are not multiples."""
    try:
        from sympy import Eq, Poly

        if not (isinstance(gold, Eq) and isinstance(pred, Eq)):
            return False
        g, p = gold.lhs - gold.rhs, pred.lhs - pred.rhs
        symbols = sorted(g.free_symbols | p.free_symbols, key=str)
        if not symbols:
            return False
        polys = [Poly(side, *symbols) for side in (g, p)]
        rational = all(poly.domain.is_ZZ or poly.domain.is_QQ for poly in polys)
        if not rational or any(poly.total_degree() != 1 for poly in polys):
            return False
        terms = [poly.as_dict() for poly in polys]
        monomials = sorted(set(terms[0]) | set(terms[1]))
        gc = [terms[0].get(m, 0) for m in monomials]
        pc = [terms[1].get(m, 0) for m in monomials]
    except Exception:
        return False
    # Multiples exactly when every 2x2 cross product vanishes.
    return any(gc[i] * pc[j] != gc[j] * pc[i] for i in range(len(gc)) for j in range(i))
