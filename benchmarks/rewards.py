"""Verifier throughput per reward type, and how much of a pipeline the rules decide alone.

    python benchmarks/rewards.py                 # 10,000 cases per type, 400-sample pipeline
    python benchmarks/rewards.py --cases 2000 --samples 200

Part 1, verdicts per second: for each closed-form type, N synthetic answers in the forms
models write them (plain, boxed, "Answer:" lines, option letters in several styles, number
words, equivalent expressions, pixel and normalised boxes; about half right) are verified with
``RuleVerifier.decide_many`` in batches of 2,000, as the verify step does. Math runs with the
deadline on (2 s) through one reused worker process (per core), then through one per core;
the mix of math forms is ``_MATH_MIX``, and each form is also timed alone (N/10 cases):
plain numbers are decided without Math-Verify's parser, roots and equations go through it
(with the shortcuts of ``rewards/math_speedups.py``), drawn from ranges wide enough that nearly
every pair is new, so Math-Verify's parse cache does not flatter them.

Part 2, the share decided without a model: a synthetic workspace (``collect synthetic``) goes
through caption, distill, rewrite and verify against the scripted local server. Distilled
answers are drawn per sample from the same forms as part 1, a few in forms no rule reads
(a choice answered with the option's text, a count as "several"). The figure is the share of
closed-form samples whose verdict needed no judge call.

Goals: math >= 500 verdicts/s per core; >= 95% of closed-form samples decided without a model.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from vlaa_data.rewards.math_pool import MathVerifier
from vlaa_data.rewards.verdict import RULE_TYPES, Case, RuleVerifier

_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


def digit_answer(rng: random.Random, gold: int) -> str:
    roll = rng.random()
    if roll < 0.45:
        return f"Answer: {gold}"
    if roll < 0.60:
        return f"So the count is $\\boxed{{{gold}}}$."
    if roll < 0.70 and gold < len(_WORDS):
        return f"The answer is {_WORDS[gold]}."
    if roll < 0.78:
        return f"**Answer:** {gold} objects"
    if roll < 0.98:
        return f"Answer: {gold + rng.choice([-2, -1, 1, 2])}"
    return "Answer: several"  # no rule reads it


def choice_answer(rng: random.Random, gold: str, options: list[str]) -> str:
    letter = gold if rng.random() < 0.55 else rng.choice("ABCD".replace(gold, ""))
    text = options["ABCD".index(letter)] if options else "it"
    roll = rng.random()
    if roll < 0.35:
        return f"Answer: {letter}"
    if roll < 0.55:
        return f"The answer is ({letter})."
    if roll < 0.70:
        return f"**{letter}**"
    if roll < 0.85:
        return f"Answer: {letter}. {text}"
    if roll < 0.98:
        return f"$\\boxed{{{letter}}}$"
    return f"Answer: {text}"  # the option's text without its letter


MATH_FORMS = ("integer", "decimal", "fraction", "degrees", "root", "equation")
# The share of each form: numbers dominate Math PUMA-style data; roots and line equations (our
# plots) are what Math-Verify's LaTeX parser must read.
_MATH_MIX = (0.35, 0.15, 0.15, 0.10, 0.15, 0.10)


def _math_pair(rng: random.Random, form: str | None = None) -> tuple[str, str]:
    """A (gold, answer) pair in ``form`` (drawn from the mix when None), about half right."""
    form = form or rng.choices(MATH_FORMS, weights=_MATH_MIX)[0]
    a, b = rng.randint(1, 40), rng.randint(2, 9)
    right = rng.random() < 0.5
    if form == "integer":
        n = rng.randint(-50, 200)
        return str(n), f"Answer: {n if right else n + rng.randint(1, 5)}"
    if form == "decimal":
        x = round(rng.uniform(0, 100), 2)
        return f"{x}", f"The answer is {x if right else round(x + 0.5, 2)}."
    if form == "fraction":
        pred = f"{a}/{b}" if right else f"{a + 1}/{b}"
        return f"\\frac{{{a}}}{{{b}}}", f"$\\boxed{{{pred}}}$"
    if form == "degrees":
        angle = rng.randint(10, 170)
        return f"{angle}°", f"Answer: ${angle if right else angle + 5}^\\circ$"
    if form == "root":
        a, b = rng.randint(1, 400), rng.randint(2, 99)  # wide, so few pairs repeat
        gold = f"\\frac{{{a}\\sqrt{{2}}}}{{{b}}}"
        pred = f"{a}\\sqrt{{2}}/{b}" if right else f"{a}\\sqrt{{3}}/{b}"
        return gold, f"Answer: ${pred}$"
    m, c = rng.randint(-50, 50), rng.randint(-99, 99)
    gold = f"y = {m}x + {c}"
    pred = f"y = {c} + {m}x" if right else f"y = {m}x - {c + 1}"
    return gold, f"\\boxed{{{pred}}}"


def _box(rng: random.Random) -> tuple[int, int, int, int]:
    x, y = rng.randint(0, 180), rng.randint(0, 140)
    return x, y, x + rng.randint(15, 70), y + rng.randint(15, 70)


def iou_answer(rng: random.Random, gold: tuple[int, ...], size: tuple[int, int]) -> str:
    roll = rng.random()
    if roll < 0.40:
        return "Answer: [{}, {}, {}, {}]".format(*gold)
    if roll < 0.70:
        jitter = [v + rng.randint(-4, 4) for v in gold]
        return "The box is [{}, {}, {}, {}].".format(*jitter)
    if roll < 0.80:
        w, h = size
        unit = [gold[0] / w, gold[1] / h, gold[2] / w, gold[3] / h]
        return "Answer: [{:.3f}, {:.3f}, {:.3f}, {:.3f}]".format(*unit)
    if roll < 0.98:
        return "Answer: [{}, {}, {}, {}]".format(*_box(rng))
    return "It is in the top left corner."


def synthetic_cases(kind: str, n: int, seed: int = 0) -> list[Case]:
    rng = random.Random(f"{kind}-{seed}")
    cases = []
    for _ in range(n):
        if kind == "digit":
            gold = rng.randint(0, 15)
            cases.append(Case(kind, digit_answer(rng, gold), str(gold)))
        elif kind == "choice":
            gold = rng.choice("ABCD")
            cases.append(
                Case(kind, choice_answer(rng, gold, ["Elks", "Owls", "Jets", "Suns"]), gold)
            )
        elif kind == "math":
            gold, answer = _math_pair(rng)
            cases.append(Case(kind, answer, gold))
        else:
            size = (rng.randint(200, 260), rng.randint(180, 260))
            gold = _box(rng)
            cases.append(
                Case(kind, iou_answer(rng, gold, size), "[{}, {}, {}, {}]".format(*gold), size)
            )
    return cases


def rate(rules: RuleVerifier, cases: list[Case]) -> tuple[float, Counter[str]]:
    rules.decide_many(cases[:50])  # warm: workers started, parsers imported
    started = time.perf_counter()
    verdicts: Counter[str] = Counter()
    for start in range(0, len(cases), 2000):
        for verdict in rules.decide_many(cases[start : start + 2000]):
            verdicts[verdict.verdict] += 1
    return len(cases) / (time.perf_counter() - started), verdicts


def part_one(n: int) -> None:
    cores = os.cpu_count() or 1
    print(f"Part 1: verdicts per second, {n:,} synthetic cases per type ({cores} cores)")
    print(f"{'type':<28}{'verdicts/s':>12}   correct / incorrect / unverifiable")
    with MathVerifier(workers=1, deadline_s=2.0) as math:
        rules = RuleVerifier(math)
        for kind in RULE_TYPES:
            per_second, verdicts = rate(rules, synthetic_cases(kind, n))
            label = f"{kind} (1 worker)" if kind == "math" else kind
            print(f"{label:<28}{per_second:>12,.0f}   {_mix(verdicts)}")
        for form in MATH_FORMS:
            rng = random.Random(f"math-{form}")
            cases = [Case("math", *reversed(_math_pair(rng, form))) for _ in range(n // 10)]
            per_second, verdicts = rate(rules, cases)
            print(f"{'  math, ' + form:<28}{per_second:>12,.0f}   {_mix(verdicts)}")
    if cores > 1:
        with MathVerifier(workers=cores, deadline_s=2.0) as math:
            per_second, verdicts = rate(RuleVerifier(math), synthetic_cases("math", n))
        print(f"{f'math ({cores} workers)':<28}{per_second:>12,.0f}   {_mix(verdicts)}")


def _mix(verdicts: Counter[str]) -> str:
    return " / ".join(str(verdicts[v]) for v in ("correct", "incorrect", "unverifiable"))


def distill_responder(golds: dict[tuple[str, str], tuple[str, str, dict]]) -> Callable:
    """Answers each distill prompt in one of the forms of part 1, drawn per sample."""
    from vlaa_data.testing.server import Reply

    def respond(request: dict, attempt: int) -> Reply:
        prompt = request["messages"][0]["content"]
        if "Rewrite it with minimal edits" in prompt:
            text = prompt.split("nothing before or after it.\n\n", 1)[1]
            return Reply.ok(text.replace("the description", "the image"))
        if "Reply with exactly one word" in prompt:  # the judge
            return Reply.ok("No")
        if "Question:" not in prompt:  # caption
            return Reply.ok("Some shapes on a plain background.")
        question = prompt.split("Question: ", 1)[1].split("\n\nThink it through", 1)[0]
        candidates = [v for (q, ctx), v in golds.items() if q == question and ctx in prompt]
        kind, gold, context = candidates[0]
        rng = random.Random(prompt)
        if kind == "digit":
            answer = digit_answer(rng, int(gold))
        elif kind == "choice":
            answer = choice_answer(rng, gold, context.get("options") or [])
        elif kind == "iou":
            box = tuple(json.loads(gold))
            answer = iou_answer(rng, box, tuple(context.get("size") or (256, 256)))
        else:
            answer = f"Answer: {gold}" if rng.random() < 0.6 else "Answer: y = 0"
        mention = "the description" if rng.random() < 0.05 else "the image"
        reasoning = f"Looking at {mention}, I work it out.\nLet me check again."
        return Reply.ok(answer, reasoning_content=reasoning)

    return respond


def part_two(samples: int) -> None:
    from vlaa_data.sources import SourceOptions, open_source
    from vlaa_data.steps.collect import collect
    from vlaa_data.steps.distill import render_context
    from vlaa_data.steps.llm_runner import run_llm_step
    from vlaa_data.steps.llm_step import LlmOptions
    from vlaa_data.steps.verify import VerifyOptions, run_verify
    from vlaa_data.testing.server import ScriptedServer
    from vlaa_data.workspace import Workspace, init_workspace

    print(f"\nPart 2: a {samples}-sample synthetic workspace through the pipeline")
    with tempfile.TemporaryDirectory() as tmp, ScriptedServer(lambda r, a: None) as server:
        root = init_workspace(Path(tmp) / "ws")
        with Workspace.open(root, write=True) as ws:
            collect(
                ws,
                open_source("synthetic", None, SourceOptions(limit=samples, seed=0)),
                name="synthetic",
            )
            rows = ws.store.query("SELECT question, context, reward_type, answer FROM samples")
            golds = {}
            for question, context, kind, answer in rows.rows:
                ctx = json.loads(context) if context else {}
                golds[(question, render_context(ctx))] = (kind, answer, ctx)
            server.responder = distill_responder(golds)
            for step in ("caption", "distill", "rewrite"):
                options = LlmOptions(model="scripted", base_url=server.url, api_key_env="")
                report = run_llm_step(ws, step, options)
                print(f"  {step:<8} {dict(report.outcomes)}")
            before = server.count
            verify = run_verify(
                ws,
                VerifyOptions(
                    judge=LlmOptions(model="scripted", base_url=server.url, api_key_env="")
                ),
            )
        closed = verify.selected  # the synthetic source has closed-form samples only
        judged = server.count - before
        print(f"  verify   {verify.to_dict()['verdicts']}, {judged} judge calls")
        share = verify.decided_by_rules / closed if closed else 1.0
        print(
            f"  closed-form samples decided without a model: {verify.decided_by_rules} of "
            f"{closed} = {share:.1%} (goal >= 95%)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000, help="cases per reward type")
    parser.add_argument("--samples", type=int, default=400, help="samples in part 2's workspace")
    args = parser.parse_args()
    part_one(args.cases)
    part_two(args.samples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
