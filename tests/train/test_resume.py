"""``--resume`` restores the checkpoint's weights, every tensor (the whole model or the LoRA
adapter), in SFT and GRPO; a run interrupted after a checkpoint and resumed ends where an
uninterrupted run of the same steps does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("trl")

from transformers import TrainerCallback

from tests.train.conftest import FAST
from vlaa_data.errors import VlaaError
from vlaa_data.testing.server import ScriptedServer
from vlaa_data.train.grpo import build_grpo_trainer
from vlaa_data.train.resume import load_checkpoint_weights
from vlaa_data.train.run import TrainOptions, TrainReport, run_trainer
from vlaa_data.train.sft import build_sft_trainer

SAVING = ("save_strategy=steps", "save_steps=1", "save_total_limit=none")


class Interrupted(Exception):
    pass


class InterruptAt(TrainerCallback):
    """Stops the run as optimizer step ``step`` + 1 begins, after checkpoint-``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.step:
            raise Interrupted


class Snapshot(TrainerCallback):
    """The trained weights as training begins, after the checkpoint was loaded: the adapter's
    (as peft saves it) with LoRA, else the model's."""

    weights: dict[str, Any]

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.weights = trained_weights(kwargs["model"])


def trained_weights(model: Any) -> dict[str, Any]:
    if hasattr(model, "peft_config"):
        from peft import get_peft_model_state_dict

        tensors = get_peft_model_state_dict(model)
    else:
        tensors = model.state_dict()
    return {name: tensor.detach().clone() for name, tensor in tensors.items()}


def checkpoint_weights(folder: Path, lora: bool) -> dict[str, Any]:
    """The checkpoint's weights read by the loaders users run: peft's adapter file, or
    ``from_pretrained``."""
    if lora:
        from safetensors.torch import load_file

        return load_file(str(folder / "adapter_model.safetensors"))
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(str(folder)).state_dict()


def train(kind: str, options: TrainOptions, *callbacks: TrainerCallback) -> Any:
    """Build the ``kind`` trainer, run it with ``callbacks``; the trainer."""
    close = None
    if kind == "sft":
        trainer, checkpoint = build_sft_trainer(options)
    else:
        trainer, checkpoint, mixed, _ = build_grpo_trainer(options)
        close = mixed.close
    for callback in callbacks:
        trainer.add_callback(callback)
    report = TrainReport(kind, trainer.args.output_dir, rows=len(trainer.train_dataset))
    try:
        run_trainer(trainer, report, options, checkpoint)
    finally:
        if close is not None:
            close()
    return trainer


def run_options(kind: str, data: Path, model: Path, out: Path, judge: ScriptedServer, *extra: str):
    values: dict[str, Any] = {"output_dir": str(out), "max_steps": 3, "seed": 7}
    if kind == "sft":
        values["per_device_train_batch_size"] = 2
        settings: tuple[str, ...] = ()
    else:
        # One rollout per step (3 prompts x G=4), graded by a judge whose grades differ within
        # a prompt's group: non-zero advantages, so the policy moves at every step.
        values.update(per_device_train_batch_size=12, judge="grader", judge_base_url=judge.url)
        settings = ("generation_batch_size=12", "max_completion_length=8", "strict_format=false")
    return TrainOptions(data, str(model), values=values, settings=(*FAST, *settings, *extra))


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize("kind", ["sft", "grpo"])
def test_an_interrupted_run_resumes_with_the_checkpoint_weights_and_ends_as_one_without_a_break(
    hf_export: Path,
    tiny_vlm: Path,
    tmp_path: Path,
    judge: ScriptedServer,
    kind: str,
    lora: bool,
) -> None:
    import torch

    extra = ("lora=true",) if lora else ()
    whole = train(kind, run_options(kind, hf_export, tiny_vlm, tmp_path / "whole", judge, *extra))
    expected = trained_weights(whole.model)

    out = tmp_path / "broken"
    broken = run_options(kind, hf_export, tiny_vlm, out, judge, *extra, *SAVING)
    with pytest.raises(Interrupted):
        train(kind, broken, InterruptAt(1))
    assert (out / "checkpoint-1").is_dir() and not (out / "checkpoint-2").exists()

    broken.resume = True
    snapshot = Snapshot()
    resumed = train(kind, broken, snapshot)
    assert resumed.state.global_step == 3

    saved = checkpoint_weights(out / "checkpoint-1", lora)
    assert set(snapshot.weights) == set(saved) and len(saved) == (28 if lora else 58)
    unequal = [n for n, t in saved.items() if not torch.equal(t, snapshot.weights[n])]
    assert not unequal, f"{len(unequal)} of {len(saved)} tensors differ from checkpoint-1"

    final = trained_weights(resumed.model)
    assert set(final) == set(expected)
    for name, tensor in expected.items():
        torch.testing.assert_close(final[name], tensor, rtol=0, atol=1e-6, msg=name)
    base = checkpoint_weights(tiny_vlm, False) if not lora else None
    moved = [n for n, t in expected.items() if base is None or not torch.equal(t, base[n])]
    assert moved, "three steps moved the weights, so a restart from the base would show"


def test_a_checkpoint_that_does_not_fit_the_model_is_one_line(
    tiny_vlm: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(str(tiny_vlm))
    tensors = load_file(str(tiny_vlm / "model.safetensors"))
    assert load_checkpoint_weights(model, tiny_vlm) == len(tensors) == 58

    short = tmp_path / "checkpoint-4"
    short.mkdir()
    save_file(
        {k: v for k, v in tensors.items() if k != "lm_head.weight"},
        str(short / "model.safetensors"),
    )
    with pytest.raises(
        VlaaError, match=r"checkpoint-4 lacks 1 of the model's 58 weights \(first: lm_head.weight\)"
    ):
        load_checkpoint_weights(model, short)

    extra = tmp_path / "checkpoint-5"
    extra.mkdir()
    save_file(
        {**tensors, "model.extra.weight": tensors["lm_head.weight"].clone()},
        str(extra / "model.safetensors"),
    )
    with pytest.raises(
        VlaaError, match=r"checkpoint-5 holds model\.extra\.weight, which has no place"
    ):
        load_checkpoint_weights(model, extra)
