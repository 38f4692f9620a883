"""``train sft`` on the pipeline's own export and the tiny Qwen2-VL: what trains, what the
loss sees, LoRA, resuming."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import pytest

pytest.importorskip("trl")

from tests.train.conftest import FAST, changed_parts, weights
from vlaa_data.train.run import RECORD, TrainOptions, run_trainer
from vlaa_data.train.sft import build_sft_trainer, run_sft


def options(data: Path, model: Path, out: Path, *settings: str, **values) -> TrainOptions:
    values = {"output_dir": str(out), "per_device_train_batch_size": 2, "max_steps": 1, **values}
    return TrainOptions(data, str(model), values=values, settings=(*FAST, *settings))


@pytest.mark.parametrize("train_vision", [False, True])
def test_one_step_trains_the_language_model_and_the_vision_encoder_only_when_asked(
    hf_export: Path, tiny_vlm: Path, tmp_path: Path, train_vision: bool
) -> None:
    out = tmp_path / "out"
    report = run_sft(options(hf_export, tiny_vlm, out, train_vision=train_vision or None))
    assert report.steps == 1 and report.rows == 3
    assert report.final_loss is not None and 0 < report.final_loss < float("inf")
    changed = changed_parts(weights(tiny_vlm), weights(out))
    assert changed == {"language": True, "projector": True, "vision": train_vision}
    record = json.loads((out / RECORD).read_text())
    assert record["kind"] == "sft" and len(record["data"]["sha256"]) == 64
    assert record["config"]["train_vision"] is train_vision
    assert (out / "processor_config.json").is_file()  # the processor, saved with the model


def test_lora_saves_an_adapter_and_leaves_the_base_weights_alone(
    hf_export: Path, tiny_vlm: Path, tmp_path: Path
) -> None:
    import torch

    out = tmp_path / "lora"
    trainer, checkpoint = build_sft_trainer(options(hf_export, tiny_vlm, out, lora=True))
    adapters = {
        name: p.detach().clone() for name, p in trainer.model.named_parameters() if "lora_" in name
    }
    run_trainer(trainer, trainer_report(trainer), options(hf_export, tiny_vlm, out), checkpoint)
    assert (out / "adapter_model.safetensors").is_file() and not (
        out / "model.safetensors"
    ).exists()
    from transformers import AutoModelForImageTextToText

    base = AutoModelForImageTextToText.from_pretrained(str(tiny_vlm)).state_dict()
    merged_names = 0
    for name, tensor in trainer.model.get_base_model().state_dict().items():
        if "lora_" in name:
            continue
        original = name.replace(".base_layer", "")
        assert torch.equal(tensor, base[original]), original
        merged_names += 1
    assert merged_names == len(base)
    moved = [n for n, p in trainer.model.named_parameters() if n in adapters]
    assert any(
        not torch.equal(adapters[n], dict(trainer.model.named_parameters())[n]) for n in moved
    )


def trainer_report(trainer):
    from vlaa_data.train.run import TrainReport

    return TrainReport("sft", trainer.args.output_dir, rows=len(trainer.train_dataset))


@pytest.mark.parametrize("whole", [False, True])
def test_the_loss_sees_the_assistant_turn_only_unless_told(
    hf_export: Path, tiny_vlm: Path, tmp_path: Path, whole: bool
) -> None:
    settings = ["completion_only_loss=false"] if whole else []
    trainer, _ = build_sft_trainer(options(hf_export, tiny_vlm, tmp_path, *settings))
    rows = [trainer.train_dataset[i] for i in range(2)]
    completions = [row["completion"][0]["content"][0]["text"] for row in rows]
    batch = trainer.data_collator(rows)
    tokenizer = trainer.processing_class.tokenizer
    image_pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    for ids, labels, completion in zip(
        batch["input_ids"], batch["labels"], completions, strict=True
    ):
        learned = tokenizer.decode(ids[labels != -100])
        if whole:
            assert "You are a helpful reasoning assistant" in learned and completion in learned
            assert (labels[ids == image_pad] != -100).all()
        else:
            assert learned.strip() == f"{completion}<|im_end|>"
            assert (labels[ids == image_pad] == -100).all()
            first = int((labels != -100).nonzero()[0])
            assert (labels[:first] == -100).all()


def test_resume_continues_from_the_last_checkpoint(
    hf_export: Path, tiny_vlm: Path, tmp_path: Path
) -> None:
    from transformers import TrainerCallback

    out = tmp_path / "resumable"
    saving = ("save_strategy=steps", "save_steps=1", "save_total_limit=none")
    run_sft(options(hf_export, tiny_vlm, out, *saving, max_steps=2))
    assert (out / "checkpoint-2").is_dir()

    class Steps(TrainerCallback):
        began: ClassVar[list[int]] = []

        def on_step_begin(self, args, state, control, **kwargs):
            self.began.append(state.global_step)

    resumed = options(hf_export, tiny_vlm, out, *saving, max_steps=3)
    resumed.resume = True
    trainer, checkpoint = build_sft_trainer(resumed)
    assert checkpoint == out / "checkpoint-2"
    trainer.add_callback(Steps())
    report = run_trainer(trainer, trainer_report(trainer), resumed, checkpoint)
    assert Steps.began == [2] and report.steps == 3 and report.resumed_from == 2
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    assert [e["step"] for e in state["log_history"] if "loss" in e] == [1, 2, 3]


def logits(folder: Path):
    """The logits of the model in ``folder`` (a model or an adapter folder) on a fixed text."""
    import torch

    from vlaa_data.hf import load_model_and_processor

    model, processor = load_model_and_processor(folder, device="cpu", dtype="fp32")
    ids = processor.tokenizer("How many red circles are in the image?", return_tensors="pt")
    with torch.no_grad():
        return model(**ids).logits


def test_merge_saves_a_plain_model_that_outputs_what_base_and_adapter_do(
    hf_export: Path, tiny_vlm: Path, tmp_path: Path
) -> None:
    import torch

    out = tmp_path / "merged"
    report = run_sft(options(hf_export, tiny_vlm, out, lora=True, merge=True))
    assert report.steps == 1
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    assert (out / "processor_config.json").is_file() and (out / RECORD).is_file()
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    merged, adapted, base = logits(out), logits(out / "adapter"), logits(tiny_vlm)
    assert torch.allclose(merged, adapted, atol=1e-5)
    assert not torch.allclose(merged, base, atol=1e-7)  # the trained adapter is in it
    assert set(weights(out)) == set(weights(tiny_vlm))  # the base's tensors, no lora_ ones


def test_merge_without_lora_is_refused(hf_export: Path, tiny_vlm: Path, tmp_path: Path) -> None:
    from vlaa_data.errors import VlaaError

    with pytest.raises(VlaaError, match=r"--merge .* needs --lora"):
        build_sft_trainer(options(hf_export, tiny_vlm, tmp_path, merge=True))
