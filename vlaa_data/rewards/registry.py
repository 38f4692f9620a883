"""The rewards, one per reward type, behind one signature; and the mixed reward for TRL.

Every scorer takes the extracted final answer (never None: a completion without one scores 0
before any scorer runs, the implicit format rule) and the gold answer, and returns a float in
[0, 1], or None when the gold itself cannot be read (never 1.0 for an unreadable gold).

``MixedReward`` has TRL's reward signature ``f(prompts, completions, **columns)`` and routes
each row by its ``reward_type`` column, so ``GRPOTrainer(reward_funcs=[MixedReward()])``
works as is. A row whose type has no scorer (``open`` without a judge or reward model) gets
None, which TRL ignores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from vlaa_data.answers import normalise_choice
from vlaa_data.rewards.extract import (
    Final,
    gold_answer,
    is_plain_junk,
    parse_options,
    read_box,
    read_choice,
    read_final,
    read_number,
    split_completion,
)
from vlaa_data.rewards.math_pool import MathCheck, MathVerifier, is_plain_number
from vlaa_data.rewards.open_scorers import OpenCase, OpenScorer

__all__ = [
    "REWARD_TYPES",
    "Graded",
    "MixedReward",
    "RewardCase",
    "RewardType",
    "Scorer",
    "grade_many",
    "iou",
    "is_correct",
    "math_reward",
    "score",
]

Box = tuple[float, float, float, float]


class Scorer(Protocol):
    def __call__(
        self, answer: str, gold: str, *, image_size: tuple[int, int] | None = None
    ) -> float | None: ...


def digit(answer: str, gold: str, *, image_size: tuple[int, int] | None = None) -> float | None:
    expected = read_number(gold_answer(gold).text)
    if expected is None:
        return None
    got = read_number(answer)
    return float(got is not None and abs(got - expected) < 1e-9)


def choice(
    answer: str,
    gold: str,
    *,
    image_size: tuple[int, int] | None = None,
    options: dict[str, str] | None = None,
) -> float | None:
    stated = gold_answer(gold).text
    expected = normalise_choice(stated) or read_choice(stated)
    if expected is None:
        return None
    return float(read_choice(answer, options) == expected)


def iou_reward(
    answer: str, gold: str, *, image_size: tuple[int, int] | None = None
) -> float | None:
    expected = read_box(gold)
    if expected is None or not _proper(expected):
        return None
    got = read_box(answer)
    if got is None or not _proper(got):
        return 0.0
    pair = _comparable(got, expected, image_size)
    return None if pair is None else iou(*pair)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes; 0 for degenerate ones."""
    if not (_proper(a) and _proper(b)):
        return 0.0
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _proper(box: Box) -> bool:
    return box[2] > box[0] and box[3] > box[1]


def _comparable(a: Box, b: Box, size: tuple[int, int] | None) -> tuple[Box, Box] | None:
    """Both boxes in one space: normalised when all values are <= 1, else pixels."""
    a_unit, b_unit = max(a) <= 1, max(b) <= 1
    if a_unit == b_unit:
        return a, b  # IoU does not care which space, as long as it is the same one
    if size is None or size[0] <= 0 or size[1] <= 0:
        return None  # one in pixels, one normalised, and no image size to relate them

    def unit(box: Box) -> Box:
        w, h = size
        return box[0] / w, box[1] / h, box[2] / w, box[3] / h

    return (a if a_unit else unit(a)), (b if b_unit else unit(b))


def math_reward(check: MathCheck) -> float | None:
    """A Math-Verify check as a reward: None only for an unreadable gold; undecided is 0."""
    return None if check.reason == "gold_unparseable" else float(bool(check.equal))


@dataclass(frozen=True)
class RewardType:
    """One reward type, everything the graders need to know of it in one place.

    ``scorer`` turns an answer and a gold into a reward (None for ``math``, checked in a
    Math-Verify batch, and ``open``, scored by a judge or reward model); ``reader`` says whether
    an answer holds anything in the type's form at all (an answer without one is undecided,
    not wrong); ``by_rules``: ``verify`` decides it without a model; ``correct_from``: the
    reward from which an answer counts as correct (``iou``: the IoU threshold, by default).
    """

    name: str
    scorer: Scorer | None = None
    reader: Callable[[str | None], Any] | None = None
    by_rules: bool = True
    correct_from: float = 1.0


REWARD_TYPES: dict[str, RewardType] = {
    kind.name: kind
    for kind in (
        RewardType("digit", digit, read_number),
        RewardType("choice", choice, read_choice),
        RewardType("math"),
        RewardType("iou", iou_reward, read_box, correct_from=0.5),
        RewardType("open", by_rules=False),
    )
}


def is_correct(
    reward_type: str, reward: float | None, *, iou_threshold: float | None = None
) -> bool | None:
    """Whether a reward counts as a right answer; None where the question does not apply (no
    reward, or an open-ended type, which has a score and no right or wrong)."""
    kind = REWARD_TYPES.get(reward_type)
    if reward is None or kind is None or not kind.by_rules:
        return None
    threshold = iou_threshold if reward_type == "iou" and iou_threshold else kind.correct_from
    return reward >= threshold


@dataclass(frozen=True)
class RewardCase:
    """One answer region to grade: ``region`` is the completion's answer region, already
    split from its reasoning (None: there is none, a format failure)."""

    reward_type: str
    region: str | None
    gold: str
    question: str | None = None
    image_size: tuple[int, int] | None = None


@dataclass(frozen=True)
class Graded:
    """A reward (None: unscored), the final answer read, and why it is what it is.

    ``note``: no_answer (nothing stated, or a hedge), gold_unreadable, no_<type>_in_answer
    (the answer holds nothing the type's reader knows), open_ended (no open scorer), no_grade,
    or Math-Verify's reason (pred_unparseable, timeout, error); ``decided`` is False where a
    rule could not settle the answer (a judge may).
    """

    reward: float | None
    answer: str | None
    note: str | None = None
    decided: bool = True


def grade_many(
    cases: Sequence[RewardCase],
    *,
    math: MathVerifier,
    open_scorer: Scorer | OpenScorer | None = None,
    strict: bool = False,
) -> list[Graded]:
    """Grade every case: math checks in one batch through the worker pool, open-ended ones
    in one batch when the scorer grades batches. ``strict`` (training rewards) also refuses
    plain text that holds several numbers among words ("xq 3 zz 7 3")."""
    graded: list[Graded | None] = [None] * len(cases)
    math_rows: list[tuple[int, Final]] = []
    open_rows: list[tuple[int, Final]] = []
    for i, case in enumerate(cases):
        final = read_final(case.region)
        junk = strict and final is not None and final.how != "boxed" and is_plain_junk(final.text)
        if final is None or junk:
            graded[i] = Graded(0.0, final.text if final else None, "no_answer")
        elif case.reward_type == "math":
            math_rows.append((i, final))
        elif case.reward_type == "open":
            if open_scorer is None:
                graded[i] = Graded(None, final.text, "open_ended", decided=False)
            elif hasattr(open_scorer, "score_many"):
                open_rows.append((i, final))
            else:
                value = open_scorer(final.text, case.gold, image_size=case.image_size)
                graded[i] = Graded(value, final.text, None if value is not None else "no_grade")
        elif case.reward_type in REWARD_TYPES:
            graded[i] = _by_rule(case, final)
        else:
            raise ValueError(f"unknown reward type {case.reward_type!r}")
    pairs = [(_gold_math_text(cases[i].gold), _math_text(f)) for i, f in math_rows]
    for (i, final), check in zip(math_rows, math.check_many(pairs), strict=True):
        reward = math_reward(check)
        undecided = check.equal is None or check.reason == "pred_unparseable"
        graded[i] = Graded(reward, final.text, check.reason, decided=not undecided)
    if open_rows:
        open_cases = [
            OpenCase(cases[i].question or "", f.text, cases[i].gold) for i, f in open_rows
        ]
        grades = open_scorer.score_many(open_cases)  # type: ignore[union-attr]
        for (i, final), value in zip(open_rows, grades, strict=True):
            graded[i] = Graded(value, final.text, None if value is not None else "no_grade")
    return [g for g in graded if g is not None]


def _by_rule(case: RewardCase, final: Final) -> Graded:
    kind, text = case.reward_type, final.text
    if kind == "choice":
        options = parse_options(case.question)
        letter = read_choice(text) or read_choice(final.after)
        by_value = read_choice(text, options) if options else None
        if letter and by_value and letter != by_value:
            return Graded(0.0, text, "choice_disagrees_with_value")
        text = letter or by_value or text
        reward = choice(text, case.gold)
    else:
        scorer = REWARD_TYPES[kind].scorer
        assert scorer is not None  # a type graded here has one (math and open go elsewhere)
        reward = scorer(text, case.gold, image_size=case.image_size)
    read = REWARD_TYPES[kind].reader or (lambda text: text)
    if reward is None:
        readable = read(gold_answer(case.gold).text) is not None
        note = "not_comparable" if readable else "gold_unreadable"
        return Graded(None, final.text, note, decided=False)
    if reward == 0 and kind != "iou" and read(text) is None:
        return Graded(0.0, final.text, f"no_{kind}_in_answer", decided=False)
    return Graded(reward, final.text)


def _math_text(final: Final) -> str:
    """What Math-Verify parses: a plain number as it is (decided without the parser), else the
    statement with its LaTeX and boxes kept."""
    return final.text if is_plain_number(final.text) else final.span


def _gold_math_text(gold: str) -> str:
    """A boxed gold goes to Math-Verify whole (it reads boxes as Math-Verify's own tests
    expect); a worked solution ending in "Answer: X" gives only X."""
    final = gold_answer(gold)
    return gold if final.how == "boxed" else _math_text(final)


def score(
    reward_type: str,
    completion: str,
    gold: str,
    *,
    reasoning: str | None = None,
    question: str | None = None,
    image_size: tuple[int, int] | None = None,
    math: MathVerifier | None = None,
    open_scorer: Scorer | None = None,
    strict: bool = False,
) -> float | None:
    """The reward of one completion; ``strict`` reads only the paper's output format."""
    if reward_type == "math" and math is None:
        raise ValueError("math rewards need a MathVerifier")
    if reward_type not in REWARD_TYPES:
        raise ValueError(f"unknown reward type {reward_type!r}")
    region = split_completion(completion, reasoning, strict=strict).answer
    case = RewardCase(reward_type, region, gold, question, image_size)
    # Without math cases a verifier starts no worker: a spare one costs nothing.
    math = math or MathVerifier()
    return grade_many([case], math=math, open_scorer=open_scorer, strict=strict)[0].reward


class MixedReward:
    """The mixed reward as a TRL reward function, routing rows by ``reward_type``.

    Gold comes from the ``solution`` column (our RL export), else ``answer``; ``image_size``
    is optional; each prompt's text is the question (an open scorer sees it, and a choice
    answered with an option's value maps to its letter). ``strict`` (the default, the
    paper's format) reads only the last ``<answer>`` block after ``</think>``.
    """

    __name__ = "mixed_reward"  # TRL logs reward functions by name

    def __init__(
        self,
        *,
        math: MathVerifier | None = None,
        open_scorer: Scorer | OpenScorer | None = None,
        strict: bool = True,
    ) -> None:
        self.math = math or MathVerifier()
        self.open_scorer = open_scorer
        self.strict = strict

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any
    ) -> list[float | None]:
        return [g.reward for g in self.grade(prompts, completions, **columns)]

    def grade(
        self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any
    ) -> list[Graded]:
        """Each row's reward with the answer read and the note saying why."""
        types: Sequence[str] = columns["reward_type"]
        golds: Sequence[str] = columns.get("solution") or columns["answer"]
        sizes: Sequence[Any] = columns.get("image_size") or [None] * len(completions)
        cases = [
            RewardCase(
                kind,
                split_completion(_text(completion), strict=self.strict).answer,
                str(gold),
                _text(prompt),
                _size(size),
            )
            for kind, completion, gold, size, prompt in zip(
                types, completions, golds, sizes, prompts, strict=True
            )
        ]
        return grade_many(cases, math=self.math, open_scorer=self.open_scorer, strict=self.strict)

    def close(self) -> None:
        self.math.close()


def _text(completion: Any) -> str:
    # TRL passes plain strings, or for conversational data a list of messages.
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        content = completion[-1].get("content", "")
        if isinstance(content, list):
            # an image part carries "text": None (our hf export's parts share one struct type)
            return "".join(p.get("text") or "" for p in content if isinstance(p, dict))
        return str(content)
    return str(completion)


def _size(value: Any) -> tuple[int, int] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return int(value[0]), int(value[1])
    return None
