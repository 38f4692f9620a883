"""One table for every rule-based reward, and the mixed reward as TRL calls it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import pytest

from vlaa_data.rewards.math_pool import MathVerifier
from vlaa_data.rewards.registry import MixedReward, iou, score


def r1(answer: str, thought: str = "thinking") -> str:
    return f"<think>{thought}</think><answer>{answer}</answer>"


@pytest.fixture(scope="module")
def math() -> Iterator[MathVerifier]:
    with MathVerifier(deadline_s=2.0) as running:
        yield running


TABLE = [
    # (type, completion, gold, image size, reward)
    ("digit", r1("3"), "3", None, 1.0),
    ("digit", r1("There are three cubes."), "3", None, 1.0),
    ("digit", r1("4"), "3", None, 0.0),
    ("digit", r1("1,200"), "1200", None, 1.0),
    ("digit", "<think>The answer is 3.</think>", "3", None, 0.0),  # only inside <think>
    ("digit", r1("3", "no wait, 4"), "3", None, 1.0),
    ("digit", r1("2") + "<answer>3</answer>", "3", None, 1.0),  # the last block counts...
    ("digit", r1("3") + "<answer>2</answer>", "3", None, 0.0),  # ...and only the last
    ("digit", r1("3"), "many", None, None),  # gold that cannot be read: never 1.0
    ("digit", "no tags, no number", "3", None, 0.0),
    ("choice", r1("(B)"), "B", None, 1.0),
    ("choice", r1("The answer is B."), "b)", None, 1.0),
    ("choice", r1("A large sphere"), "A", None, 0.0),  # an article, not an option
    ("choice", r1("C"), "B", None, 0.0),
    ("choice", r1("B"), "blue", None, None),
    ("iou", r1("[0, 0, 10, 10]"), "[0, 0, 10, 10]", None, 1.0),
    ("iou", r1("[0, 0, 10, 10]"), "[5, 0, 15, 10]", None, pytest.approx(1 / 3)),
    ("iou", r1("[0.0, 0.0, 0.5, 0.5]"), "[0, 0, 50, 50]", (100, 100), 1.0),  # mixed spaces
    ("iou", r1("[0.0, 0.0, 0.5, 0.5]"), "[0, 0, 50, 50]", None, None),  # no size to relate
    ("iou", r1("[-5, -5, 5, 5]"), "[0, 0, 5, 5]", None, pytest.approx(0.25)),
    ("iou", r1("[10, 10, 0, 0]"), "[0, 0, 10, 10]", None, 0.0),  # degenerate prediction
    ("iou", r1("[1, 2, 3]"), "[0, 0, 10, 10]", None, 0.0),  # malformed prediction
    ("iou", r1("[0, 0, 1, 1]"), "[5, 5, 5, 9]", None, None),  # degenerate gold
    ("math", r1("\\boxed{\\frac{1}{2}}"), "0.5", None, 1.0),
    ("math", r1("$0.25$"), "$\\frac{1}{2}$", None, 0.0),
    ("math", "<think>\\boxed{1/2}</think>", "0.5", None, 0.0),
    ("math", r1("2"), "the left one", None, None),
    ("open", r1("a cat"), "a cat", None, None),  # no judge or reward model: no opinion
]


@pytest.mark.parametrize(("kind", "completion", "gold", "size", "expected"), TABLE)
def test_rewards(math: MathVerifier, kind: str, completion: str, gold: str, size, expected) -> None:
    assert score(kind, completion, gold, image_size=size, math=math) == expected


def test_iou_of_disjoint_and_touching_boxes_is_zero() -> None:
    assert iou((0, 0, 1, 1), (1, 0, 2, 1)) == 0.0
    assert iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0


def test_mixed_reward_as_trl_calls_it(math: MathVerifier) -> None:
    reward = MixedReward(math=math)
    completions = [
        r1("3"),
        [{"role": "assistant", "content": r1("(C)")}],  # conversational
        r1("\\boxed{2}"),
        "<think>unfinished",
        r1("a dog"),
        r1("[0, 0, 0.5, 1]"),
    ]
    rewards = reward(
        prompts=["p"] * 6,
        completions=completions,
        reward_type=["digit", "choice", "math", "math", "open", "iou"],
        solution=["3", "C", "2", "2", "a dog", "[0, 0, 1, 1]"],
        image_size=[None, None, None, None, None, [640, 480]],
    )
    assert rewards == [1.0, 1.0, 1.0, 0.0, None, 0.5]
    assert reward.__name__ == "mixed_reward"


def test_an_open_scorer_reads_the_question_of_a_prompt_with_an_image_part(
    math: MathVerifier,
) -> None:
    """The hf export's prompt parts share one struct type, so an image part has text None."""
    from vlaa_data.rewards.open_scorers import OpenCase

    class Questions:
        seen: ClassVar[list[str]] = []

        def score_many(self, cases: list[OpenCase]) -> list[float | None]:
            self.seen.extend(case.question for case in cases)
            return [0.5] * len(cases)

    prompt = [
        {"role": "system", "content": [{"type": "text", "text": "Think first."}]},
        {
            "role": "user",
            "content": [{"type": "image", "text": None}, {"type": "text", "text": "Q?"}],
        },
    ]
    reward = MixedReward(math=math, open_scorer=Questions())
    rewards = reward([prompt], [r1("a dog")], reward_type=["open"], solution=["a dog"])
    assert rewards == [0.5] and Questions.seen == ["Q?"]


def test_one_table_of_reward_types_serves_collect_verify_and_eval() -> None:
    from vlaa_data.evaluation.scoring import IOU_CORRECT
    from vlaa_data.rewards.registry import REWARD_TYPES, is_correct
    from vlaa_data.rewards.verdict import RULE_TYPES

    assert list(REWARD_TYPES) == ["digit", "choice", "math", "iou", "open"]
    assert RULE_TYPES == ("digit", "choice", "math", "iou")
    assert IOU_CORRECT == REWARD_TYPES["iou"].correct_from == 0.5
    assert is_correct("iou", 0.6) and not is_correct("iou", 0.6, iou_threshold=0.7)
    assert is_correct("digit", 1.0) and not is_correct("digit", 0.0)
    assert is_correct("open", 0.9) is None and is_correct("digit", None) is None


def test_a_new_reward_type_is_one_entry_of_the_table(
    math: MathVerifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A toy type, registered in the table alone, is graded by reward, train and verify."""
    from vlaa_data.rewards.extract import read_number
    from vlaa_data.rewards.registry import REWARD_TYPES, RewardType
    from vlaa_data.rewards.verdict import Case, RuleVerifier
    from vlaa_data.steps.collect import _answer_and_type

    def parity(answer: str, gold: str, *, image_size=None) -> float | None:
        number = read_number(answer)
        return (
            None
            if gold not in ("even", "odd")
            else float(number is not None and ("even" if number % 2 == 0 else "odd") == gold)
        )

    monkeypatch.setitem(REWARD_TYPES, "parity", RewardType("parity", parity, read_number))
    assert _answer_and_type("odd", "parity") == ("odd", "parity")  # collect takes the name
    assert score("parity", r1("4"), "even", math=math) == 1.0
    assert score("parity", r1("4"), "odd", math=math) == 0.0
    rewards = MixedReward(math=math)(
        ["q"] * 2, [r1("7"), r1("no idea")], reward_type=["parity"] * 2, solution=["odd"] * 2
    )
    assert rewards == [1.0, 0.0]
    verdicts = RuleVerifier(math).decide_many(
        [Case("parity", "Answer: 7", "odd"), Case("parity", "Answer: many", "odd")]
    )
    assert [(v.verdict, v.method, v.note) for v in verdicts] == [
        ("correct", "parity", None),
        ("unverifiable", "parity", "no_parity_in_answer"),
    ]
