"""Math-Verify behind a deadline that always holds: checks run in worker processes, and a
worker that overruns is killed and replaced.

Math-Verify's own timeouts use ``signal.alarm``: they work only in the main thread, and some
inputs hang in C code where no signal lands. So they are off here (``parsing_timeout=None``,
``timeout_seconds=None``) and the parent enforces ``deadline_s`` per check instead. A check
that overruns it is tried once more with five times as long: on a loaded machine a check can
overrun by wall-clock time alone, and a verdict must not depend on the load. Workers
are started once and reused; a replacement's start-up (imports of sympy) does not count
against anyone's deadline.

``verify(gold, pred)`` is called gold first, as Math-Verify requires (it is asymmetric).

Pairs of plain numbers (integers, decimals, ``a/b``, ``\\frac{a}{b}``, degrees) are decided in the
parent when the answer is certain under Math-Verify's own rules: exactly equal values are
equal, distinct exact values are not, and a decimal more than 1e-6 away cannot round to the
same 6 places. Everything else, and a decimal within 1e-6, goes to Math-Verify; its parser
costs milliseconds per expression, and plain numbers are most of what datasets hold.
"""

from __future__ import annotations

import multiprocessing
import re
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from multiprocessing.connection import Connection, wait
from typing import Any

__all__ = ["MathCheck", "MathVerifier", "decide_plainly", "is_plain_number", "plain_to_latex"]

_START_TIMEOUT_S = 120.0
_RETRY_FACTOR = 5  # the default second deadline of a check that overran its first


@dataclass(frozen=True)
class MathCheck:
    """``equal`` is None when undecided; ``reason`` then says why."""

    equal: bool | None
    reason: str | None = None  # gold_unparseable | pred_unparseable | timeout | error


_PLAIN = re.compile(
    r"^\$?\s*(?P<sign>[-+\u2212])?\s*"
    r"(?:(?P<int>\d+)(?:\.(?P<dec>\d+))?"
    r"|\\[dt]?frac\s*\{\s*(?P<n>\d+)\s*\}\s*\{\s*(?P<d>\d+)\s*\}"
    r"|(?P<a>\d+)\s*/\s*(?P<b>\d+))"
    # a degree sign, which Math-Verify ignores too (60° equals 60)
    r"\s*(?:°|\^\s*\\circ|\^\s*\{\s*\\circ\s*\}|degrees?)?"
    r"\s*\$?$"
)
_ROUNDING = Fraction(1, 10**6)  # Math-Verify compares floats rounded to 6 places


def _plain_number(text: str) -> tuple[Fraction, bool] | None:
    """``(value, written as a decimal)`` for a plain number, else None."""
    match = _PLAIN.match(text.strip())
    if match is None:
        return None
    if match["int"] is not None:
        value = Fraction(f"{match['int']}.{match['dec'] or 0}")
    else:
        numerator, denominator = int(match["n"] or match["a"]), int(match["d"] or match["b"])
        if denominator == 0:
            return None
        value = Fraction(numerator, denominator)
    return (-value if match["sign"] in ("-", "\u2212") else value), match["dec"] is not None


def is_plain_number(text: str) -> bool:
    """An integer, decimal, fraction or degree that is decided without Math-Verify's parser."""
    return _plain_number(text) is not None


def decide_plainly(gold: str, pred: str) -> bool | None:
    """Equal, not equal, or None when Math-Verify must decide; see the module docstring."""
    g, p = _plain_number(gold), _plain_number(pred)
    if g is None or p is None:
        return None
    if g[0] == p[0]:
        return True
    if (g[1] or p[1]) and abs(g[0] - p[0]) <= _ROUNDING:
        return None  # rounding to 6 places might make them equal
    return False


def _serve(conn: Connection) -> None:
    import logging

    from math_verify import parse, verify

    from vlaa_data.rewards import math_speedups

    math_speedups.install()
    # Each call would warn that its own timeouts are off: we know, the parent keeps time.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    conn.send("ready")
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        conn.send(check_pair(parse, verify, *job))


def check_pair(
    parse: Any, verify: Any, gold_text: str, pred_text: str
) -> tuple[bool | None, str | None]:
    """One check with Math-Verify's ``parse`` and ``verify``: ``(equal, reason)``."""
    # Math-Verify reads only the ASCII minus; a typeset one is common in model output.
    gold_text, pred_text = (text.replace("\u2212", "-") for text in (gold_text, pred_text))
    try:
        gold = _parse(parse, gold_text)
        if not gold:
            return None, "gold_unparseable"
        pred = _parse(parse, pred_text)
        if not pred:
            return False, "pred_unparseable"
        return bool(verify(gold, pred, timeout_seconds=None)), None
    except Exception as exc:  # a bug of the parser on a strange input: undecided
        return None, f"error: {type(exc).__name__}"


# Text that reads as a formula: a LaTeX command, =, ^, braces, a variable next to a number
# or an operator ("3x", "x - 4"), or a bracketed list.
_FORMULA = re.compile(
    r"\\[a-zA-Z]|[=^_{}]|\d\s*[a-zA-Z]\b|\b[a-zA-Z]\s*[-+*/]"
    r"|[(\[][^()\[\]]*,[^()\[\]]*[)\]]"  # a tuple or an interval: "(1,2),(2,1)", "[-4, 0)"
)


def _parse(parse: Any, text: str) -> list[Any]:
    """Math-Verify's parse, with formulas written without delimiters read as ``$…$``.

    Datasets store golds as "\\frac{1}{2}" or "y = 2x + 1", and answers come out of
    ``\\boxed{}`` bare. Math-Verify's LaTeX extractor needs delimiters; without them its
    expression extractor takes the last number ("y = 3x + 2" reads as 2), so a wrong
    equation would match. Plain text and numbers are parsed as they are.
    """
    bare = "$" not in text and "\\boxed" not in text
    if bare and "\\" not in text and _PLAIN_FUNCTION.search(text):
        text = plain_to_latex(text)
    if bare and _FORMULA.search(text):
        parsed = parse(f"${text}$", parsing_timeout=None)
        if any(not isinstance(item, str) for item in parsed):  # not just the text echoed
            return parsed
    return parse(text, parsing_timeout=None)


# Golds written as code: "2*sqrt(3)", "sin(x)^2 + pi" (Math-Verify's plain parser stops at
# the first function and reads "2*sqrt(3)" as 2).
_PLAIN_FUNCTION = re.compile(
    r"\b(?:sqrt|sin|cos|tan|cot|sec|csc|log|ln|exp|pi|arcsin|arccos|arctan)\b|\*"
)


def plain_to_latex(text: str) -> str:
    """A formula written as code in LaTeX: ``sqrt(x)`` -> ``\\sqrt{x}``, ``sin`` -> ``\\sin``,
    ``pi`` -> ``\\pi``, ``**`` -> ``^``, ``*`` -> ``\\cdot``."""
    out = text.replace("**", "^")
    while (start := out.find("sqrt(")) >= 0:
        depth, end = 0, -1
        for i in range(start + 4, len(out)):
            depth += {"(": 1, ")": -1}.get(out[i], 0)
            if depth == 0:
                end = i
                break
        if end < 0:
            break
        out = f"{out[:start]}\\sqrt{{{out[start + 5 : end]}}}{out[end + 1 :]}"
    out = re.sub(
        r"(?<!\\)\b(sin|cos|tan|cot|sec|csc|log|ln|exp|arcsin|arccos|arctan|pi)\b", r"\\\1", out
    )
    out = re.sub(r"\^\s*\(([^()]*)\)", r"^{\1}", out)
    return out.replace("*", " \\cdot ")


class _Worker:
    def __init__(self, context: Any) -> None:
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child,), daemon=True)
        self.process.start()
        child.close()
        self.ready = False
        self.job: int | None = None
        self.started = 0.0
        self.deadline = 0.0

    def kill(self) -> None:
        self.process.kill()
        self.process.join()
        self.conn.close()


class MathVerifier:
    """A pool of ``workers`` processes checking ``(gold, pred)`` pairs with Math-Verify."""

    def __init__(
        self, *, workers: int = 1, deadline_s: float = 2.0, retry_deadline_s: float | None = None
    ) -> None:
        if workers < 1 or deadline_s <= 0:
            raise ValueError("workers must be >= 1 and deadline_s > 0")
        self.deadline_s = deadline_s
        self.retry_deadline_s = retry_deadline_s or deadline_s * _RETRY_FACTOR
        self._context = multiprocessing.get_context("forkserver")
        self._size = workers
        self._workers: list[_Worker] = []

    def check(self, gold: str, pred: str) -> MathCheck:
        return self.check_many([(gold, pred)])[0]

    def check_many(self, pairs: Sequence[tuple[str, str]]) -> list[MathCheck]:
        """Check every pair within ``deadline_s`` of a worker's time; one that overruns it is
        tried once more within ``retry_deadline_s`` (default: five times as long) before it
        is called a timeout."""
        results: list[MathCheck | None] = [None] * len(pairs)
        pending: deque[int] = deque()
        retried: set[int] = set()
        for i, (gold, pred) in enumerate(pairs):
            plain = decide_plainly(gold, pred)
            if plain is None:
                pending.append(i)
            else:
                results[i] = MathCheck(plain)
        while len(self._workers) < min(self._size, len(pending)):
            self._workers.append(_Worker(self._context))
        while pending or any(w.job is not None for w in self._workers):
            for worker in self._workers:
                if worker.ready and worker.job is None and pending:
                    worker.job = pending.popleft()
                    worker.started = time.monotonic()
                    retry = worker.job in retried
                    worker.deadline = self.retry_deadline_s if retry else self.deadline_s
                    worker.conn.send(pairs[worker.job])
            busy = [w for w in self._workers if w.job is not None]
            waiting = [w for w in self._workers if not w.ready]
            now = time.monotonic()
            timeout = min((w.started + w.deadline - now for w in busy), default=1.0)
            if waiting and not busy:
                timeout = _START_TIMEOUT_S
            for conn in wait([w.conn for w in busy + waiting], max(timeout, 0.0)):
                worker = next(w for w in self._workers if w.conn is conn)
                try:
                    message = worker.conn.recv()
                except EOFError:  # the worker died: its job is undecided
                    if not worker.ready:
                        raise RuntimeError("a Math-Verify worker died while starting") from None
                    self._replace(worker, results, "error: worker died")
                    continue
                if message == "ready":
                    worker.ready = True
                elif worker.job is not None:
                    equal, reason = message
                    results[worker.job] = MathCheck(equal, reason)
                    worker.job = None
            now = time.monotonic()
            for worker in list(self._workers):
                if worker.job is not None and now - worker.started > worker.deadline:
                    if worker.job not in retried:
                        # A busy machine can make any check overrun: once more, with time to
                        # spare, so that a verdict does not depend on the load.
                        retried.add(worker.job)
                        pending.append(worker.job)
                        worker.job = None
                    self._replace(worker, results, "timeout")
        return [r if r is not None else MathCheck(None, "error") for r in results]

    def close(self) -> None:
        for worker in self._workers:
            if worker.process.is_alive():
                worker.kill()
        self._workers.clear()

    def __enter__(self) -> MathVerifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _replace(self, worker: _Worker, results: list[MathCheck | None], reason: str) -> None:
        if worker.job is not None:
            results[worker.job] = MathCheck(None, reason)
        worker.kill()
        self._workers[self._workers.index(worker)] = _Worker(self._context)
