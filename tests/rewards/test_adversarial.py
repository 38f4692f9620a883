"""Answers built to fool a verifier: one table per way a wrong "correct" (or a missed one)
can happen, each row a completion, a gold, and the reward it must get.

The tables follow the failure classes found on real DeepSeek-R1 traces: LaTeX lost from
boxed answers, an answer taken back later, counts with asides, choices named in prose or by
value, golds stored as worked solutions, free text routed to math, and the training format.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import write_jsonl
from vlaa_data.answers import infer_reward_type
from vlaa_data.evaluation.data import EvalRow
from vlaa_data.evaluation.scoring import NO_ANSWER, score_completions
from vlaa_data.rewards.math_pool import MathVerifier
from vlaa_data.rewards.registry import MixedReward, score
from vlaa_data.rewards.verdict import Case, RuleVerifier
from vlaa_data.sources.vlaa_thinking import origin_of, origin_reward_type


@pytest.fixture(scope="module")
def math() -> Iterator[MathVerifier]:
    with MathVerifier(workers=1, deadline_s=5.0) as running:
        yield running


def tagged(answer: str) -> str:
    return f"<think>Let me work it out.</think>\n<answer>{answer}</answer>"


BOXED_KEEPS_ITS_LATEX = [
    # (answer region, gold, reward): boxes parsed as LaTeX, as Math-Verify parses $…$
    ("So the ratio is $\\boxed{7:33}$.", "7:32", 0.0),
    ("So the ratio is $\\boxed{7:32}$.", "$7:32$", 1.0),
    ("\\boxed{3:5}", "3:4", 0.0),
    ("The range is \\boxed{[-4,4]}.", "4", 0.0),
    ("\\boxed{2<x<5}", "5", 0.0),
    ("\\boxed{1, 2}", "2", 0.0),
    ("\\boxed{1 or 2}", "2", 0.0),  # a hedge is no answer
    ("\\boxed{1,2}", "1.2", 0.0),  # a pair, not a decimal comma
    ("\\boxed{1,2}", "$1, 2$", 1.0),
    ("The sum is $\\boxed{11,\\! 111}$.", "11111", 1.0),  # thousands separator
    ("She pays $\\boxed{\\$16.50}$.", "16.50", 1.0),
    ("\\boxed{50\\%}", "0.5", 1.0),  # as Math-Verify matches them
    ("\\boxed{1}\\boxed{2}", "$\\{1,2\\}$", 1.0),  # several boxes are a set
    ("\\boxed{1}\\boxed{2}", "2", 0.0),
    ("The pairs are \\boxed{(1, 2)}, \\boxed{(2, 1)}.", "(1,2),(2,1)", 1.0),
    ("\\[ \\boxed{[-4, 0]} \\]", "$[-4,0]$", 1.0),
    ("\\boxed{\\frac{1}{2}}", "0.5", 1.0),
    ("\\boxed{\\frac{1}{3}}", "0.5", 0.0),
]


@pytest.mark.parametrize(("region", "gold", "expected"), BOXED_KEEPS_ITS_LATEX)
def test_boxed_content_is_read_as_latex(
    math: MathVerifier, region: str, gold: str, expected: float
) -> None:
    assert score("math", tagged(region), gold, math=math) == expected
    assert score("math", tagged(region), gold, math=math, strict=True) == expected


LAST_STATED = [
    # (type, answer region, gold, reward): the answer stated last is the answer
    ("math", "\\boxed{3}. Wait, I miscounted: there are actually 4.", "4", 1.0),
    ("math", "\\boxed{3}. Wait, I miscounted: there are actually 4.", "3", 0.0),
    ("digit", "\\boxed{3}. Wait, I miscounted: there are actually 4.", "3", 0.0),
    ("digit", "**Answer:** 23\n\nHmm, recounting, the final answer is 24.", "24", 1.0),
    ("digit", "**Answer:** 23\n\nHmm, recounting, the final answer is 24.", "23", 0.0),
    ("math", "$\\boxed{23}$\n\nOn reflection the final answer is $24$.", "23", 0.0),
    ("math", "$\\boxed{23}$\n\nOn reflection the final answer is $24$.", "24", 1.0),
    ("choice", "**Answer:** (B)\n\nCorrection: the answer is C.", "B", 0.0),
    ("choice", "**Answer:** (B)\n\nCorrection: the answer is C.", "C", 1.0),
    # a comparison after the box is no correction
    ("math", "\\boxed{5}\n\nThis is actually 2 more than before.", "5", 1.0),
    ("math", "\\boxed{5}\n\nThis is actually 2 more than before.", "2", 0.0),
    # hedges are not answers
    ("digit", "The answer is 3 or 4.", "3", 0.0),
    ("digit", "The answer is 3 or 4.", "4", 0.0),
    ("choice", "**Answer:** A or C", "A", 0.0),
    ("choice", "It is either (A) or (C).", "C", 0.0),
    ("math", "The final answer is \\boxed{1 \\text{ or } 2}.", "1", 0.0),
]


@pytest.mark.parametrize(("kind", "region", "gold", "expected"), LAST_STATED)
def test_the_final_answer_is_the_last_one_stated(
    math: MathVerifier, kind: str, region: str, gold: str, expected: float
) -> None:
    assert score(kind, tagged(region), gold, math=math) == expected


DIGITS = [
    # (answer region, gold, reward)
    ("There are 3 objects (2 cylinders and 1 cube).", "3", 1.0),
    ("There are 3 objects (2 cylinders and 1 cube).", "1", 0.0),
    ("There are 3 objects: 2 cylinders and 1 cube.", "3", 1.0),
    ("There are 3 objects: 2 cylinders and 1 cube.", "1", 0.0),
    ("**Answer:** There are 3 objects remaining.", "3", 1.0),
    ("3 red and 2 blue, so 5 in total.", "5", 1.0),
    ("3 red and 2 blue, so 5 in total.", "2", 0.0),
    ("After removing 2 cubes, 5 objects remain", "2", 0.0),  # ambiguous: no number read
    ("There are twenty-one cubes.", "21", 1.0),
    ("There are twenty-one cubes.", "1", 0.0),
    ("There are twenty-one cubes.", "20", 0.0),
    ("Answer: one hundred and five", "105", 1.0),
    ("答案是3个", "3", 1.0),
    ("共有 7 个物体", "7", 1.0),
    ("xq 3 zz 7 3", "3", 0.0),
    ("The count is 12.", "1", 0.0),
    ("1,200 beads", "1200", 1.0),
]


@pytest.mark.parametrize(("region", "gold", "expected"), DIGITS)
def test_counts_are_read_from_the_answer_sentence(
    math: MathVerifier, region: str, gold: str, expected: float
) -> None:
    assert score("digit", tagged(region), gold, math=math) == expected


OPTIONS = "Find tan(ADC).\nChoices:\nA: \\frac{1}{2}\nB: 2\nC: \\frac{√{3}}{3}\nD: √{3}"
CHOICES = [
    # (answer region, question, gold, reward)
    ("(B) is wrong, so C", None, "C", 1.0),
    ("(B) is wrong, so C", None, "B", 0.0),
    ("A can be ruled out; the answer is D.", None, "A", 0.0),
    ("Not A. The answer is B.", None, "B", 1.0),
    ("Not A. The answer is B.", None, "A", 0.0),
    ("$\\boxed{\\text{B}}$", None, "B", 1.0),
    ("\\boxed{b}", None, "B", 1.0),
    ("the answer is b", None, "B", 1.0),
    ("The correct option is D.", None, "D", 1.0),
    ("Ｃ", None, "C", 1.0),  # full width
    ("答案：C", None, "C", 1.0),
    ("Die Antwort lautet C.", None, "C", 1.0),
    ("Die Antwort lautet C.", None, "A", 0.0),
    ("**Answer: B) The ratio decreases as the rate increases.**", None, "B", 1.0),
    ("A large sphere sits behind the cube.", None, "A", 0.0),
    # an option's value, with its letter after the box or alone
    ("**Answer:** \\(\\boxed{\\frac{\\sqrt{3}}{3}}\\) (Option C)", OPTIONS, "C", 1.0),
    ("**Answer:** \\(\\boxed{\\frac{\\sqrt{3}}{3}}\\) (Option C)", OPTIONS, "A", 0.0),
    ("\\boxed{\\frac{\\sqrt3}{3}}", OPTIONS, "C", 1.0),
    ("\\boxed{\\frac{\\sqrt3}{3}}", OPTIONS, "D", 0.0),
    ("\\boxed{2}", OPTIONS, "B", 1.0),
    ("\\boxed{\\frac{1}{2}} (Option C)", OPTIONS, "C", 0.0),  # the value says A: no answer
    ("\\boxed{7}", OPTIONS, "B", 0.0),  # a value no option holds
]


@pytest.mark.parametrize(("region", "question", "gold", "expected"), CHOICES)
def test_choices_are_read_in_prose_in_other_scripts_and_by_value(
    math: MathVerifier, region: str, question: str | None, gold: str, expected: float
) -> None:
    assert score("choice", tagged(region), gold, question=question, math=math) == expected


SOLUTION_GOLD = (
    "Step 1: Put the point (pi/10, 5) into y = a * sin(-5 * x): 5 = a * sin(-pi/2).\n"
    "Step 2: Since sin(-pi/2) = -1, 5 = -a, so a = -5.\n\n†Answer: y = -5 * sin(-5 * x)."
)
GOLDS = [
    # (type, answer region, gold, reward): only the gold's final answer can match
    ("math", "**Final Answer:**\n\\[\n\\boxed{y = -5 \\sin(-5x)}\n\\]", SOLUTION_GOLD, 1.0),
    ("math", "\\boxed{a = -5}", SOLUTION_GOLD, 0.0),
    ("math", "\\boxed{-5}", SOLUTION_GOLD, 0.0),
    ("math", "\\boxed{5}", SOLUTION_GOLD, 0.0),
    ("digit", "5", "There are 2 red cubes and 3 blue ones. Answer: 5", 1.0),
    ("digit", "3", "There are 2 red cubes and 3 blue ones. Answer: 5", 0.0),
    ("digit", "2", "There are 2 red cubes and 3 blue ones. Answer: 5", 0.0),
    ("choice", "C", "B is too small and D too large.\nAnswer: C", 1.0),
    ("choice", "B", "B is too small and D too large.\nAnswer: C", 0.0),
    # plain-text functions in a gold match their LaTeX forms
    ("math", "\\boxed{2\\sqrt{3}}", "2*sqrt(3)", 1.0),
    ("math", "\\boxed{2}", "2*sqrt(3)", 0.0),
    ("math", "\\boxed{\\frac{\\sqrt{2}}{2}}", "sqrt(2)/2", 1.0),
    ("math", "\\boxed{\\pi^2}", "pi**2", 1.0),
    ("math", "\\boxed{\\sin(x)}", "sin(x)", 1.0),
    ("math", "\\boxed{\\cos(x)}", "sin(x)", 0.0),
]


@pytest.mark.parametrize(("kind", "region", "gold", "expected"), GOLDS)
def test_golds_are_answers_not_worked_solutions(
    math: MathVerifier, kind: str, region: str, gold: str, expected: float
) -> None:
    assert score(kind, tagged(region), gold, math=math) == expected


ROUTES = [
    # (ground-truth answer, reward type at collect)
    ("It costs $5 more than the blue one", "open"),
    ("The angle is 45° here", "open"),
    ("a < b when the sun is up", "open"),
    ("total = cost of parts", "open"),
    ("y = -5 * sin(-5 * x)", "math"),
    ("45°", "math"),
    ("x < 5", "math"),
    ("\\frac{\\sqrt{3}}{3}", "math"),
    ("3", "digit"),
    ("B", "choice"),
    ("[1, 2, 3, 4]", "iou"),
]


@pytest.mark.parametrize(("answer", "expected"), ROUTES)
def test_free_text_is_never_routed_to_math(answer: str, expected: str) -> None:
    assert infer_reward_type(answer) == expected


ORIGINS = [
    # (published id, reward type by its origin)
    ("clevr_math-CLEVR_train_027977.png", "digit"),
    ("geoqa170k-geoqa_plus-2905-63590", "choice"),
    ("synthesis-2", "math"),
    ("arxivqa-cond-mat-23815", "choice"),
    ("allava-allava_laion_100760552", "open"),
    ("allava_laion-100760552", "open"),
    ("docvqa-1234", "open"),
    ("vizwiz-VizWiz_train_1.jpg", "open"),
    ("coco-000000123.jpg", None),  # a box or a short answer: its shape decides
]


@pytest.mark.parametrize(("record_id", "expected"), ORIGINS)
def test_published_origins_map_to_the_papers_types(record_id: str, expected: str | None) -> None:
    assert origin_reward_type(origin_of({"id": record_id})) == expected


STRICT = [
    # (type, completion, gold, lenient reward, strict reward)
    ("digit", tagged("3"), "3", 1.0, 1.0),
    ("digit", "The answer is 3.", "3", 1.0, 0.0),  # no tags: the format reward is 0
    ("digit", "<think>count</think>\nThe answer is 3.", "3", 1.0, 0.0),
    ("digit", "<answer>3</answer>", "3", 1.0, 0.0),  # no </think> before it
    ("digit", "<think>count</think><answer>3", "3", 1.0, 0.0),  # an unclosed answer block
    ("digit", "<think><answer>9</answer></think><answer>4</answer>", "9", 0.0, 0.0),
    ("digit", tagged("xq 3 zz 7 3"), "3", 0.0, 0.0),
    ("math", tagged("xq 3 zz 7 3"), "3", 1.0, 0.0),  # Math-Verify alone would read a 3
    ("math", "xq 3 zz 7 3", "3", 1.0, 0.0),
    ("math", tagged("\\boxed{3}"), "3", 1.0, 1.0),
    ("choice", tagged("C"), "C", 1.0, 1.0),
    ("choice", "C", "C", 1.0, 0.0),
]


@pytest.mark.parametrize(("kind", "completion", "gold", "lenient", "strict"), STRICT)
def test_strict_mode_reads_only_the_training_format(
    math: MathVerifier, kind: str, completion: str, gold: str, lenient: float, strict: float
) -> None:
    assert score(kind, completion, gold, math=math) == lenient
    assert score(kind, completion, gold, math=math, strict=True) == strict


def test_the_mixed_reward_is_strict_unless_asked(math: MathVerifier) -> None:
    columns = {"reward_type": ["digit", "digit"], "solution": ["3", "3"]}
    completions = [tagged("3"), "The answer is 3."]
    assert MixedReward(math=math)(["q", "q"], completions, **columns) == [1.0, 0.0]
    lenient = MixedReward(math=math, strict=False)
    assert lenient(["q", "q"], completions, **columns) == [1.0, 1.0]


def test_the_mixed_reward_maps_a_value_to_its_option_from_the_prompt(math: MathVerifier) -> None:
    prompt = [{"role": "user", "content": [{"type": "text", "text": OPTIONS}]}]
    rewards = MixedReward(math=math)(
        [prompt, prompt],
        [tagged("\\boxed{\\frac{\\sqrt3}{3}}"), tagged("\\boxed{2}")],
        reward_type=["choice", "choice"],
        solution=["C", "C"],
    )
    assert rewards == [1.0, 0.0]


def test_verify_reads_leniently_and_explains_a_hedge(math: MathVerifier) -> None:
    rules = RuleVerifier(math)
    verdicts = rules.decide_many(
        [
            Case("digit", "There are 3 objects (2 cylinders and 1 cube).", "3"),
            Case("digit", "The answer is 3 or 4.", "3"),
            Case("choice", "\\boxed{2}", "B", question=OPTIONS),
            Case("digit", "After removing 2 cubes, 5 objects remain", "5"),
        ]
    )
    assert [(v.verdict, v.note) for v in verdicts] == [
        ("correct", None),
        ("incorrect", "no_answer"),
        ("correct", None),
        ("unverifiable", "no_digit_in_answer"),  # the judge may read it; rules cannot
    ]


def test_eval_counts_format_failures_as_no_answer(math: MathVerifier) -> None:
    rows = [
        EvalRow(
            id=name,
            source="s",
            reward_type="digit",
            question="How many?",
            gold="3",
            prompt=[],
            image_sha="0",
            image_path=Path("none.png"),
            image_size=(10, 10),
        )
        for name in ("a", "b")
    ]
    scores = score_completions(rows, [tagged("3"), "There are 3."], math=math)
    assert [(s.reward, s.correct, s.note) for s in scores] == [
        (1.0, True, None),
        (0.0, False, NO_ANSWER),
    ]


def test_reward_cli_strict_flag(tmp_path: Path, cli) -> None:
    rows = [
        {"completion": "The answer is 3.", "answer": "3", "reward_type": "digit"},
        {"completion": tagged("3"), "answer": "3", "reward_type": "digit"},
    ]
    source = write_jsonl(tmp_path / "rows.jsonl", rows)
    for flags, expected in (((), [1.0, 1.0]), (("--strict",), [0.0, 1.0])):
        out = tmp_path / f"scored{len(flags)}.jsonl"
        result = cli("reward", source, "--out", out, *flags)
        assert result.returncode == 0, result.stderr
        assert [json.loads(line)["reward"] for line in out.read_text().splitlines()] == expected


R1_TRACES = [
    # (type, completion shaped like the published R1 traces, question, gold, reward)
    (
        "digit",
        "<think>\nThe sphere is a ball; the three cylinders are not. Four objects, take away "
        "one: 3. Wait, are there other balls? No.\n</think>\n\nOnly the cylinders stay.\n\n"
        "**Answer:** There are 3 objects remaining.  ",
        "Subtract all balls. How many objects are left?",
        "3",
        1.0,
    ),
    (
        "choice",
        "<think>\nArc AC is 60 degrees, so angle ADC is 30 and tan is √3/3: option C.\n</think>"
        "\n\nThe value of tan(angle ADC) is \\(\\frac{\\sqrt{3}}{3}\\).\n\n"
        "**Answer:** \\(\\boxed{\\frac{\\sqrt{3}}{3}}\\) (Option C)",
        OPTIONS,
        "C",
        1.0,
    ),
    (
        "math",
        "<think>\nSubstitute the point: a = -5.\n</think>\n\nSo a = -5 and\n\n"
        "**Final Answer:**\n\\[\n\\boxed{y = -5 \\sin(-5x)}\n\\]",
        "What is the function's equation?",
        SOLUTION_GOLD,
        1.0,
    ),
    (
        "choice",
        "<think>\nThe red dots trend downward: option B.\n</think>\n\nThe ratio falls.\n\n"
        "**Answer: B) The ratio decreases as the repetition rate increases.**",
        "How does it change?\nA) It increases.\nB) It decreases.\nC) It stays.",
        "B",
        1.0,
    ),
    (
        "digit",
        "<think>\nI count 4... wait, the small one is hidden behind: 5.\n</think>\n\n"
        "**Answer:** 4",  # the trace's reasoning says 5; the stated answer is 4
        "How many?",
        "5",
        0.0,
    ),
]


@pytest.mark.parametrize(("kind", "completion", "question", "gold", "expected"), R1_TRACES)
def test_r1_shaped_traces(
    math: MathVerifier, kind: str, completion: str, question: str, gold: str, expected: float
) -> None:
    assert score(kind, completion, gold, question=question, math=math) == expected
