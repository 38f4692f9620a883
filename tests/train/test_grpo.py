"""``train grpo`` with the real mixed reward over digit, choice and open-ended rows."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("trl")

from tests.train.conftest import FAST, changed_parts, weights
from vlaa_data.errors import VlaaError
from vlaa_data.hf import load_processor
from vlaa_data.testing.server import ScriptedServer
from vlaa_data.train.callbacks import AdaptiveKl, adaptive_beta, annealed_beta
from vlaa_data.train.grpo import build_grpo_trainer, run_grpo
from vlaa_data.train.run import TrainOptions


def test_two_steps_with_the_mixed_reward_log_each_type_and_move_the_policy(
    hf_export: Path, tiny_vlm: Path, tmp_path: Path, judge: ScriptedServer
) -> None:
    """A random tiny model almost never answers a digit or choice row right, so those rewards
    are all 0 and teach nothing. The open-ended rows are graded by a real JudgeScorer over
    HTTP, by a judge whose grade depends on the completion's text: completions of one prompt
    get different rewards, hence non-zero advantages and a gradient. Each step makes its own
    rollout (3 prompts x G=4), so each logging step has rewards; a type missing from a step's
    prompts is logged as None there. The KL coefficient follows the shipped adaptive
    controller, with a horizon of one step's completions so that one update shows."""
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
    settings = (
        *FAST,
        "generation_batch_size=12",
        "max_completion_length=8",
        "strict_format=false",
        "kl_horizon=12",
    )
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
    # beta starts at 1e-3 and moves by the KL the first step logged, over 12 completions
    first, second = (entry["beta"] for entry in steps)
    assert first == 1e-3 and steps[0]["kl"] is not None
    assert second == pytest.approx(adaptive_beta(1e-3, steps[0]["kl"], 5e-4, 12, 12))
    assert second != first
    changed = changed_parts(weights(tiny_vlm), weights(out))
    assert changed["language"] and not changed["vision"]
    # the processor is saved with the recipe's image size, 256 x 32 x 32 pixels
    assert load_processor(out).image_processor.size["longest_edge"] == 256 * 32 * 32


def test_open_ended_rows_without_a_scorer_are_left_out_with_a_note(
    hf_export: Path, tiny_vlm: Path, tmp_path: Path
) -> None:
    values = {"output_dir": str(tmp_path), "per_device_train_batch_size": 4}
    settings = (*FAST, "generation_batch_size=16")  # a rollout the 4 rows fill
    trainer, _, mixed, notes = build_grpo_trainer(
        TrainOptions(hf_export, str(tiny_vlm), values=values, settings=settings)
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


class _Trainer:
    beta = 0.0


def _state(step: int, log_history: list[dict] | None = None) -> SimpleNamespace:
    return SimpleNamespace(global_step=step, max_steps=100, log_history=log_history or [])


def test_the_adaptive_kl_controller_follows_openrlhfs_update() -> None:
    """A synthetic KL sequence, logged every 2 steps of 256 completions, against OpenRLHF's
    AdaptiveKLController written out: value *= 1 + clip(kl / target - 1, -0.2, 0.2) * n / H."""
    target, horizon, per_step = 5e-4, 10000, 256
    kls = [0.0, 2e-4, 5e-4, 5.5e-4, 1e-3, 4e-2, None, 3e-4]
    trainer = _Trainer()
    callback = AdaptiveKl(trainer, 1e-3, target, horizon, per_step)
    callback.on_train_begin(None, _state(0), None)
    expected, value, pending = [], 1e-3, 0
    for index, kl in enumerate(kls):
        step = 2 * (index + 1)
        logs = {"loss": 0.1, "kl": kl}
        callback.on_log(None, _state(step, [dict(logs)]), None, logs=logs)
        assert logs["beta"] == pytest.approx(value)  # the coefficient these steps used
        pending += 2 * per_step
        if kl is not None:  # no KL measured: the samples count towards the next update
            error = float(np.clip(kl / target - 1, -0.2, 0.2))
            value *= 1 + error * pending / horizon
            pending = 0
        expected.append(value)
        assert trainer.beta == pytest.approx(value), index
    # clipped both ways: KL 0 and KL 80 x target move it by 20% x 512 / 10000 at most
    assert expected[0] == pytest.approx(1e-3 * (1 - 0.2 * 512 / 10000))
    assert expected[5] == pytest.approx(expected[4] * (1 + 0.2 * 512 / 10000))
    assert expected[2] == pytest.approx(expected[1])  # on target: unchanged


def test_the_adaptive_kl_controller_resumes_from_the_logged_records() -> None:
    records = [{"step": 2, "beta": 1e-3, "kl": 0.0}, {"step": 4, "beta": 9e-4, "kl": 1e-3}]
    trainer = _Trainer()
    callback = AdaptiveKl(trainer, 1e-3, 5e-4, 10000, 256)
    callback.on_train_begin(None, _state(4, records), None)
    assert trainer.beta == pytest.approx(adaptive_beta(9e-4, 1e-3, 5e-4, 2 * 256, 10000))
    assert callback.last_step == 4


def test_beta_anneals_linearly_from_the_first_step_to_the_last() -> None:
    assert annealed_beta(1e-3, 5e-4, 0, 11) == 1e-3
    assert math.isclose(annealed_beta(1e-3, 5e-4, 5, 11), 7.5e-4)
    assert annealed_beta(1e-3, 5e-4, 10, 11) == 5e-4
    assert annealed_beta(1e-3, 5e-4, 0, 1) == 5e-4


@pytest.mark.parametrize("lora", [True, False])
def test_grpo_from_an_adapter_folder_trains_on_its_base_with_the_adapter(
    hf_export: Path, tiny_vlm: Path, tmp_path: Path, judge: ScriptedServer, lora: bool
) -> None:
    """With --lora the adapter itself trains on and still names the base; without, the
    adapter is merged and the whole language model trains from there."""
    import json

    from safetensors.torch import load_file

    from vlaa_data.hf import merge_adapter
    from vlaa_data.testing.tiny_vlm import build_tiny_adapter

    adapter = build_tiny_adapter(tiny_vlm, tmp_path / "sft-lora")
    out = tmp_path / "grpo"
    values = {
        "output_dir": str(out),
        "max_steps": 1,
        "per_device_train_batch_size": 12,
        "judge": "grader",
        "judge_base_url": judge.url,
        "lora": lora or None,
    }
    settings = (*FAST, "generation_batch_size=12", "max_completion_length=8", "strict_format=false")
    report = run_grpo(TrainOptions(hf_export, str(adapter), values=values, settings=settings))
    assert report.steps == 1
    if lora:
        config = json.loads((out / "adapter_config.json").read_text())
        assert config["base_model_name_or_path"] == str(tiny_vlm)
        assert config["r"] == 4  # the adapter's own, not the recipe's lora_r
        before = load_file(str(adapter / "adapter_model.safetensors"))
        after = load_file(str(out / "adapter_model.safetensors"))
        assert set(before) == set(after)
        assert any(not torch_equal(before[name], after[name]) for name in before)
    else:
        merged = merge_adapter(adapter, tmp_path / "merged")
        changed = changed_parts(weights(merged), weights(out))
        assert changed == {"language": True, "projector": True, "vision": False}
        assert changed_parts(weights(tiny_vlm), weights(merged))["language"]


def torch_equal(a, b) -> bool:
    import torch

    return torch.equal(a, b)
