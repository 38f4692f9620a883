"""``train grpo`` with the real mixed reward over digit, choice and open-ended rows."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("trl")

from tests.train.conftest import FAST, changed_parts, weights
from vlaa_data.errors import VlaaError
from vlaa_data.testing.server import Reply, ScriptedServer
from vlaa_data.train.callbacks import annealed_beta
from vlaa_data.train.grpo import build_grpo_trainer, run_grpo
from vlaa_data.train.run import TrainOptions


def grade_by_letters(request: dict, attempt: int) -> Reply:
    """A judge whose 0-10 grade is a fixed function of the answer's text, so the four
    completions of one prompt, which differ, get different grades."""
    prompt = request["messages"][0]["content"]
    answer = prompt.split("Answer to grade: ", 1)[1].split("\nReference", 1)[0]
    return Reply.ok(str(sum(map(ord, answer)) % 11))


@pytest.fixture
def judge() -> Iterator[ScriptedServer]:
    with ScriptedServer(grade_by_letters) as server:
        yield server


def test_two_steps_with_the_mixed_reward_log_each_type_and_move_the_policy(
    hf_export: Path, tiny_vlm: Path, tmp_path: Path, judge: ScriptedServer
) -> None:
    """A random tiny model almost never answers a digit or choice row right, so those rewards
    are all 0 and teach nothing. The open-ended rows are graded by a real JudgeScorer over
    HTTP, by a judge whose grade depends on the completion's text: completions of one prompt
    get different rewards, hence non-zero advantages and a gradient. Each step makes its own
    rollout (3 prompts x G=4), so each logging step has rewards; a type missing from a step's
    prompts is logged as None there."""
    out = tmp_path / "grpo"
    values = {
        "output_dir": str(out),
        "max_steps": 2,
        "per_device_train_batch_size": 12,
        "judge": "grader",
        "judge_base_url": judge.url,
    }
    # A random model never writes the paper's tags: read its answers leniently, or every
    # reward is the format's 0 and nothing would be graded.
    settings = (*FAST, "generation_batch_size=12", "max_completion_length=8", "strict_format=false")
    report = run_grpo(TrainOptions(hf_export, str(tiny_vlm), values=values, settings=settings))
    assert report.steps == 2 and report.rows == 6 and not report.notes
    steps = [entry for entry in report.log_history if "loss" in entry]
    assert [entry["step"] for entry in steps] == [1, 2]
    for kind in ("digit", "choice", "open"):
        means = [entry[f"rewards/{kind}/mean"] for entry in steps]
        assert all(m is None or 0 <= m <= 1 for m in means), (kind, means)
        assert any(m is not None for m in means), kind
    assert any((entry["rewards/open/std"] or 0) > 0 for entry in steps)
    assert min(entry["frac_reward_zero_std"] for entry in steps) < 1
    assert judge.requests, "the open-ended rows went to the judge"
    # beta annealed linearly from 1e-3 (first step) to 5e-4 (last)
    assert [entry["beta"] for entry in steps] == pytest.approx([1e-3, 5e-4])
    changed = changed_parts(weights(tiny_vlm), weights(out))
    assert changed["language"] and not changed["vision"]


def test_open_ended_rows_without_a_scorer_are_left_out_with_a_note(
    hf_export: Path, tiny_vlm: Path, tmp_path: Path
) -> None:
    values = {"output_dir": str(tmp_path), "per_device_train_batch_size": 4}
    trainer, _, mixed, notes = build_grpo_trainer(
        TrainOptions(hf_export, str(tiny_vlm), values=values, settings=FAST)
    )
    mixed.close()
    assert set(trainer.train_dataset["reward_type"]) == {"digit", "choice"}
    assert [f.__name__ for f in trainer.reward_funcs] == ["digit", "choice"]
    assert notes == ["2 open-ended rows left out: pass --judge or --reward-model to score them"]
    assert "messages" not in trainer.train_dataset.column_names


def test_vllm_generation_without_vllm_is_one_line(hf_export: Path, tiny_vlm: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed")
    values = {"use_vllm": True, "vllm_mode": "colocate"}
    with pytest.raises(VlaaError, match=r"pip install 'vlaa-data\[gpu\]'"):
        build_grpo_trainer(TrainOptions(hf_export, str(tiny_vlm), values=values))


def test_beta_anneals_linearly_from_the_first_step_to_the_last() -> None:
    assert annealed_beta(1e-3, 5e-4, 0, 11) == 1e-3
    assert math.isclose(annealed_beta(1e-3, 5e-4, 5, 11), 7.5e-4)
    assert annealed_beta(1e-3, 5e-4, 10, 11) == 5e-4
    assert annealed_beta(1e-3, 5e-4, 0, 1) == 5e-4
