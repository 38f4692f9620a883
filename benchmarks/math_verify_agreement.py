"""Our math reward against Math-Verify's own test suite.

Reads every ``(gold, pred, expected)`` row of the parametrized tests in Math-Verify's source
distribution (the installed version's sdist, fetched from the package index with ``pip
download``, or ``--sdist FILE`` / ``--tests DIR``), keeps the rows that use Math-Verify's
default settings (precision 6, strict, no set-relation comparison), and scores each twice:

- plain Math-Verify: ``verify(parse(gold), parse(pred))`` with its default configs;
- ours: ``score("math", pred, gold)``, what ``vlaa-data reward`` and ``verify`` compute
  (the lenient reader);
- ours, strict (what ``train grpo`` and ``eval`` compute), on each pred put in the training
  format (``<think>…</think><answer>PRED</answer>``); strict mode also refuses plain text holding
  several numbers among words, so it agrees less with rows that expect such text to match.

It prints the agreement of each with the tests' expected verdicts, and every row where ours
says "correct" but the test expects "wrong" and plain Math-Verify does not (a wrong
"correct" beyond Math-Verify's own).

    python benchmarks/math_verify_agreement.py
    python benchmarks/math_verify_agreement.py --tests path/to/Math-Verify/tests --show-misses
"""

from __future__ import annotations

import argparse
import ast
import importlib.metadata
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from vlaa_data.rewards.math_pool import MathVerifier
from vlaa_data.rewards.registry import score

# Parameters that change Math-Verify's settings, with the value that means "default".
_DEFAULTS = {"precision": 6, "strict": True, "allow_set_relation_comp": False}
_EXPECTED = ("expected", "result")


@dataclass(frozen=True)
class Row:
    origin: str
    gold: str
    pred: str
    expected: bool


def rows_from_tests(folder: Path) -> list[Row]:
    """Every default-settings ``gold, pred, expected`` row of the test files in ``folder``."""
    rows: list[Row] = []
    for path in sorted(folder.glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for func in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
            for decorator in func.decorator_list:
                if not (isinstance(decorator, ast.Call) and _is_parametrize(decorator.func)):
                    continue
                names = [n.strip() for n in ast.literal_eval(decorator.args[0]).split(",")]
                if "gold" not in names or "pred" not in names:
                    continue
                expected = next((n for n in _EXPECTED if n in names), None)
                if expected is None:
                    continue
                try:
                    values = ast.literal_eval(decorator.args[1])
                except ValueError:
                    continue
                for value in values:
                    params = dict(zip(names, value, strict=True))
                    if any(params.get(k, v) != v for k, v in _DEFAULTS.items()):
                        continue
                    origin = f"{path.name}::{func.name}"
                    gold, pred = params["gold"], params["pred"]
                    rows.append(Row(origin, gold, pred, bool(params[expected])))
    return rows


def _is_parametrize(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "parametrize"


def _tests_folder(args: argparse.Namespace, scratch: Path) -> Path:
    if args.tests:
        return Path(args.tests)
    sdist = Path(args.sdist) if args.sdist else _download_sdist(scratch)
    with tarfile.open(sdist) as archive:
        archive.extractall(scratch, filter="data")
    return next(scratch.glob("*/tests"))


def _download_sdist(scratch: Path) -> Path:
    version = importlib.metadata.version("math-verify")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
    command += ["--quiet", "-d", str(scratch), f"math-verify=={version}"]
    subprocess.run(command, check=True)
    return next(scratch.glob("*.tar.gz"))


def plain_math_verify(rows: list[Row]) -> list[bool]:
    from math_verify import parse, verify

    return [bool(verify(parse(r.gold), parse(r.pred))) for r in rows]


def report(name: str, verdicts: list[bool], rows: list[Row], plain: list[bool], show: bool) -> None:
    """Agreement with the tests' expected verdicts, and wrong "correct"s beyond plain's."""
    agree = sum(v == r.expected for v, r in zip(verdicts, rows, strict=True))
    wrong = [i for i, (v, r) in enumerate(zip(verdicts, rows, strict=True)) if v and not r.expected]
    beyond = [i for i in wrong if not plain[i]]
    print(
        f"{name:22} agreement {agree}/{len(rows)} = {agree / len(rows):.1%}; "
        f"wrong 'correct' {len(wrong)} ({len(beyond)} beyond Math-Verify's own)"
    )
    for v, r in zip(verdicts, rows, strict=True):
        if show and v != r.expected:
            print(f"    {r.origin}: expected {r.expected}, got {v}")
            print(f"      gold {r.gold[:100]!r}\n      pred {r.pred[-100:]!r}")


def in_format(pred: str) -> str:
    """``pred`` in the training format: its answer (after any ``</think>``) in answer tags."""
    head, close, tail = pred.rpartition("</think>")
    return (
        f"{head}{close}<answer>{tail}</answer>"
        if close
        else f"<think>…</think><answer>{pred}</answer>"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", help="Math-Verify's tests/ folder")
    parser.add_argument("--sdist", help="Math-Verify's source distribution (.tar.gz)")
    parser.add_argument("--show-misses", action="store_true", help="print every disagreement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        rows = rows_from_tests(_tests_folder(args, Path(scratch)))
    started = time.perf_counter()
    plain = plain_math_verify(rows)
    plain_s = time.perf_counter() - started
    with MathVerifier(workers=2, deadline_s=10.0) as math:
        started = time.perf_counter()
        lenient = [score("math", r.pred, r.gold, math=math) == 1.0 for r in rows]
        ours_s = time.perf_counter() - started
        strict = [
            score("math", in_format(r.pred), r.gold, math=math, strict=True) == 1.0 for r in rows
        ]
    print(f"Math-Verify {importlib.metadata.version('math-verify')}'s tests: {len(rows)} rows")
    report("plain Math-Verify", plain, rows, plain, args.show_misses)
    report("ours (lenient)", lenient, rows, plain, args.show_misses)
    report("ours (strict, tagged)", strict, rows, plain, args.show_misses)
    print(f"time: plain {plain_s:.1f} s, ours {ours_s:.1f} s (2 workers)")


if __name__ == "__main__":
    main()
