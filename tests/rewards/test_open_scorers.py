"""Open-ended scorers: an LLM judge's 0-10 grade through the scripted server, and the paper's
reward-model formula, over a stand-in S and over a real (tiny) sequence-classification model."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.conftest import write_jsonl
from vlaa_data.rewards.math_pool import MathVerifier
from vlaa_data.rewards.open_scorers import (
    JudgeScorer,
    OpenCase,
    RewardModelScorer,
    TransformersRewardModel,
    read_grade,
)
from vlaa_data.rewards.registry import MixedReward
from vlaa_data.testing.server import Reply, ScriptedServer


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        ("7", 0.7),
        ("10", 1.0),
        ("0", 0.0),
        ("**8**", 0.8),
        ("6/10", 0.6),
        ("9.", 0.9),
        ("11", None),
        ("7.5", None),
        ("I would say 7", None),
        ("", None),
    ],
)
def test_read_grade(reply: str, score: float | None) -> None:
    assert read_grade(reply) == score


GRADES = {"an umbrella": "9", "a dog": "2", "a cat": "maybe 5?", "boom": None}


def grader(request: dict, attempt: int) -> Reply:
    prompt = request["messages"][0]["content"]
    answer = prompt.split("Answer to grade: ", 1)[1].split("\n", 1)[0]
    grade = GRADES[answer]
    return Reply.error(500) if grade is None else Reply.ok(grade)


@pytest.fixture
def judge_server():
    with ScriptedServer(grader) as server:
        yield server


def judge_for(server: ScriptedServer) -> JudgeScorer:
    scorer = JudgeScorer.from_preset("grader", base_url=server.url, timeout_s=5)
    scorer.spec = type(scorer.spec)(**{**scorer.spec.__dict__, "max_retries": 1, "backoff_s": 0})
    return scorer


def test_a_judge_grades_concurrently_sends_each_request_once_and_never_guesses(
    judge_server: ScriptedServer,
) -> None:
    judge = judge_for(judge_server)
    cases = [
        OpenCase("What is held?", "an umbrella", "a red umbrella"),
        OpenCase("What is held?", "an umbrella", "a red umbrella"),  # the same request
        OpenCase("What animal?", "a dog", "a cat"),
        OpenCase("What animal?", "a cat", "a dog"),  # not a grade
        OpenCase("What animal?", "boom", "a dog"),  # the endpoint fails
    ]
    assert judge.score_many(cases) == [0.9, 0.9, 0.2, None, None]
    bodies = [r["messages"][0]["content"] for r in judge_server.requests]
    assert sum("Answer to grade: an umbrella" in body for body in bodies) == 1
    assert (
        "Question: What is held?" in bodies[0] and "Reference answer: a red umbrella" in bodies[0]
    )
    assert judge_server.requests[0]["model"] == "grader"
    sent = judge_server.count
    assert judge(answer="a dog", gold="a cat") == 0.2  # the Scorer signature
    assert judge_server.count == sent + 1  # a new question, so a new request


class LengthModel:
    """A stand-in S: the response's length in words (decides which reward is expected)."""

    def __init__(self) -> None:
        self.calls: list[Sequence[tuple[str, str]]] = []

    def scores(self, items: Sequence[tuple[str, str]]) -> list[float]:
        self.calls.append(items)
        return [float(len(response.split())) for _, response in items]


def test_the_reward_model_formula_and_one_batch_per_call() -> None:
    model = LengthModel()
    scorer = RewardModelScorer(model, beta=0.5)
    cases = [
        OpenCase("q", "a b c d", "a b"),  # S(pred) 4 > S(ref) 2: 1 - exp(-0.5 * 2)
        OpenCase("q", "a b", "a b"),  # equal: 0
        OpenCase("q", "a", "a b c"),  # lower: 0
    ]
    assert scorer.score_many(cases) == [pytest.approx(1 - math.exp(-1.0)), 0.0, 0.0]
    assert len(model.calls) == 1 and len(model.calls[0]) == 6  # predictions and references
    with pytest.raises(ValueError, match="beta"):
        RewardModelScorer(model, beta=0)


def test_mixed_reward_batches_open_rows_with_their_prompt_as_question() -> None:
    model = LengthModel()
    with MathVerifier(workers=1) as math_pool:
        reward = MixedReward(math=math_pool, open_scorer=RewardModelScorer(model, beta=1.0))
        rewards = reward(
            prompts=[[{"role": "user", "content": "What is held?"}], "How many?"],
            completions=[
                "<think>hmm</think><answer>a red umbrella</answer>",
                "<think>count</think><answer>3</answer>",
            ],
            reward_type=["open", "digit"],
            solution=["umbrella", "3"],
        )
    assert rewards == [pytest.approx(1 - math.exp(-2.0)), 1.0]
    assert model.calls == [[("What is held?", "a red umbrella"), ("What is held?", "umbrella")]]


@pytest.fixture(scope="module")
def tiny_reward_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from vlaa_data.testing.tiny_vlm import build_tiny_reward_model

    return build_tiny_reward_model(tmp_path_factory.mktemp("tiny_rm"))


def test_a_sequence_classification_reward_model_loaded_from_disk(tiny_reward_model: Path) -> None:
    import torch
    import transformers

    rm = TransformersRewardModel(str(tiny_reward_model), batch_size=2, device="cpu")
    items = [("What is held?", "an umbrella"), ("What is held?", "a very long answer here")]
    items.append(("Q?", "x"))
    scores = rm.scores(items)
    # By hand: the same text, one at a time, through the saved model.
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_reward_model)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(tiny_reward_model)
    for (question, response), got in zip(items, scores, strict=True):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}, {"role": "assistant", "content": response}],
            tokenize=False,
        )
        with torch.no_grad():
            expected = model(**tokenizer(text, return_tensors="pt")).logits[0, 0].item()
        assert got == pytest.approx(expected, abs=1e-4)
    scorer = RewardModelScorer(rm, beta=2.0)
    pred, ref = scores[0], scores[1]
    got = scorer.score_many([OpenCase(*items[0], gold=items[1][1])])[0]
    assert got == pytest.approx(1 - math.exp(-2.0 * (pred - ref)) if pred > ref else 0.0)
    assert scorer.score_many([OpenCase("q", "same", "same")]) == [0.0]


def test_reward_cli_with_a_judge(judge_server: ScriptedServer, tmp_path: Path, cli) -> None:
    rows = [
        {"completion": "Answer: an umbrella", "answer": "umbrella", "reward_type": "open"},
        {"completion": "Answer: a cat", "answer": "a dog", "reward_type": "open"},
        {"completion": "Answer: 3", "answer": "3", "reward_type": "digit"},
    ]
    data = write_jsonl(tmp_path / "rows.jsonl", rows)
    done = cli("reward", data, "--judge", "grader", "--base-url", judge_server.url, "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["by_type"]["open"] == {
        "rows": 2,
        "scored": 1,
        "mean_reward": 0.9,
        "unscored": {"no grade": 1},
    }
    scored = [json.loads(line) for line in data.read_text().splitlines()]
    assert [row["reward"] for row in scored] == [0.9, None, 1.0]
