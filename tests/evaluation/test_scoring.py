"""Scoring known completions: gold answers earn accuracy 1 per type, wrong ones 0, and a
completion without an answer is a format failure, not a silent 0 among the others."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vlaa_data.evaluation.data import EvalRow
from vlaa_data.evaluation.generate import Generation
from vlaa_data.evaluation.report import EvalReport, summarise
from vlaa_data.evaluation.scoring import NO_ANSWER, is_correct, score_completions
from vlaa_data.rewards.open_scorers import JudgeScorer
from vlaa_data.testing.server import Reply, ScriptedServer

# (reward type, source, gold, a wrong answer)
CASES = [
    ("digit", "clevr", "3", "4"),
    ("choice", "geoqa", "B", "(D)"),
    ("math", "puma", "\\frac{1}{2}", "0.25"),
    ("iou", "coco", "[10, 10, 50, 50]", "[60, 60, 90, 90]"),
    ("open", "docvqa", "a red umbrella", "a dog"),
]


def eval_row(reward_type: str, source: str, gold: str, index: int = 0) -> EvalRow:
    return EvalRow(
        id=f"{source}/{index}",
        source=source,
        reward_type=reward_type,
        question=f"Question {index} about the image?",
        gold=gold,
        prompt=[],
        image_sha="0" * 64,
        image_path=Path("unused.png"),
        image_size=(100, 100),
    )


def wrapped(answer: str) -> str:
    return f"<think>\nLooking closely.\n</think>\n<answer>\n{answer}\n</answer>"


def report_of(rows: list[EvalRow], completions: list[str], **scorers) -> tuple[list, EvalReport]:
    scores = score_completions(rows, completions, **scorers)
    report = EvalReport("m", "d", "rl", None, "o.jsonl", {})
    generations = [Generation(text, finish_reason="stop") for text in completions]
    return scores, summarise(report, rows, generations, scores)


def exact_grader(request: dict, attempt: int) -> Reply:
    """10 when the answer to grade is the reference answer, else 0."""
    prompt = request["messages"][0]["content"]
    gold = re.search(r"Reference answer: (.*)\n", prompt).group(1)
    answer = re.search(r"Answer to grade: (.*)\n", prompt).group(1)
    return Reply.ok("10" if answer == gold else "0")


@pytest.fixture
def judge():
    with ScriptedServer(exact_grader) as server:
        yield JudgeScorer.from_preset("grader", base_url=server.url, timeout_s=5)


def test_gold_answers_score_one_and_wrong_answers_zero_per_type(judge: JudgeScorer) -> None:
    rows = [eval_row(kind, source, gold, i) for i, (kind, source, gold, _) in enumerate(CASES)]
    rows += [eval_row(kind, source, gold, 9) for kind, source, gold, _ in CASES]
    completions = [wrapped(gold) for _, _, gold, _ in CASES]
    completions += [wrapped(wrong) for *_, wrong in CASES]

    scores, report = report_of(rows, completions, open_scorer=judge)

    assert [s.reward for s in scores] == [1.0] * 5 + [0.0] * 5
    assert [s.correct for s in scores] == [True] * 4 + [None] + [False] * 4 + [None]
    assert [s.answer for s in scores[:5]] == [gold for _, _, gold, _ in CASES]
    assert all(s.note is None for s in scores)
    for kind, *_ in CASES:
        stats = report.by_type[kind]
        assert (stats.n, stats.scored, stats.mean_reward, stats.no_answer) == (2, 2, 0.5, 0)
        assert stats.accuracy == (None if kind == "open" else 0.5)
    assert report.by_source["clevr"].accuracy == 0.5
    # open rows have a score, not a right or wrong: they stay out of accuracy
    assert (report.overall.graded, report.overall.correct) == (8, 4)


def test_only_right_answers_give_accuracy_one_per_type() -> None:
    rows = [eval_row(kind, source, gold) for kind, source, gold, _ in CASES if kind != "open"]
    scores, report = report_of(rows, [wrapped(row.gold) for row in rows])
    assert all(s.correct for s in scores)
    assert {kind: stats.accuracy for kind, stats in report.by_type.items()} == {
        "digit": 1.0,
        "choice": 1.0,
        "math": 1.0,
        "iou": 1.0,
    }
    assert report.overall.accuracy == 1.0


def test_iou_counts_half_overlap_as_correct_and_reports_the_mean_iou() -> None:
    rows = [eval_row("iou", "coco", "[0, 0, 100, 100]", i) for i in range(3)]
    completions = [
        wrapped("[0, 0, 100, 60]"),  # IoU 0.6
        wrapped("[0, 0, 100, 30]"),  # IoU 0.3
        wrapped("[0.0, 0.0, 1.0, 1.0]"),  # normalised, the same box: IoU 1
    ]
    scores, report = report_of(rows, completions)
    assert [s.reward for s in scores] == pytest.approx([0.6, 0.3, 1.0])
    assert [s.correct for s in scores] == [True, False, True]
    assert report.by_type["iou"].accuracy == pytest.approx(2 / 3)
    assert report.by_type["iou"].mean_reward == pytest.approx(1.9 / 3)
    # a stricter threshold, as verify's [verify] iou_threshold may be: 0.6 no longer counts
    stricter = score_completions(rows, completions, iou_threshold=0.75)
    assert [s.correct for s in stricter] == [False, False, True]


def test_a_completion_without_an_answer_is_a_format_failure() -> None:
    rows = [eval_row("digit", "clevr", "3", i) for i in range(3)]
    completions = [
        "<think>\nThree, but the budget ran out before",  # thinking never closed
        "<think>\nThree.\n</think>\n<answer>\n3\n</answer>",
        "<think>\nThree.\n</think>\n<answer></answer>",  # an empty answer block
    ]
    scores, report = report_of(rows, completions)
    assert [(s.answer, s.reward, s.correct, s.note) for s in scores] == [
        (None, 0.0, False, NO_ANSWER),
        ("3", 1.0, True, None),
        (None, 0.0, False, NO_ANSWER),
    ]
    digit = report.by_type["digit"]
    assert (digit.n, digit.scored, digit.no_answer, digit.correct) == (3, 3, 2, 1)


def test_open_rows_without_a_scorer_are_unscored_not_wrong() -> None:
    rows = [eval_row("open", "docvqa", "a red umbrella"), eval_row("digit", "clevr", "3", 1)]
    scores, report = report_of(rows, [wrapped("an umbrella"), wrapped("3")])
    assert (scores[0].reward, scores[0].correct) == (None, None)
    assert scores[0].note == "no scorer for open answers"
    assert report.by_type["open"].to_dict() == {
        "n": 1,
        "scored": 0,
        "accuracy": None,
        "mean_reward": None,
        "correct": 0,
        "no_answer": 0,
        "truncated": 0,
        "failed": 0,
    }
    assert (report.overall.scored, report.overall.accuracy) == (1, 1.0)


def test_a_row_without_a_completion_is_unscored() -> None:
    scores = score_completions([eval_row("digit", "clevr", "3")], [None])
    assert (scores[0].reward, scores[0].correct, scores[0].note) == (None, None, "no completion")


@pytest.mark.parametrize(
    ("reward_type", "reward", "correct"),
    [
        ("digit", 1.0, True),
        ("math", 0.0, False),
        ("iou", 0.5, True),
        ("iou", 0.49, False),
        ("open", 0.9, None),
        ("choice", None, None),
    ],
)
def test_is_correct(reward_type: str, reward: float | None, correct: bool | None) -> None:
    assert is_correct(reward_type, reward) is correct
