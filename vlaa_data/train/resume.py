"""Resuming from a checkpoint with every weight restored, or a one-line error.

transformers 5 saves a model in the checkpoint format of its family: ``save_pretrained``
reverts the key renames that ``from_pretrained`` applies (a Qwen2-VL's language model is
``model.language_model.*`` in the class and ``model.*`` on disk, its vision tower
``model.visual.*`` and ``visual.*``). Trainer resumes with a plain non-strict
``load_state_dict`` of the checkpoint's ``model.safetensors``, which matches 1 of a Qwen2-VL's
58 tensors (``lm_head``), skips the rest with a log line and trains on from the base weights.
``ExactResume`` loads the checkpoint through the model's own renames instead and refuses one
whose tensors and the model's do not match one to one; with LoRA, peft's own loader is right,
and the adapter it loaded is checked against the checkpoint's.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from vlaa_data.errors import VlaaError

__all__ = ["ExactResume", "check_adapter_weights", "exact_resume", "load_checkpoint_weights"]


class ExactResume:
    """Mixed into a TRL trainer class (``exact_resume``): ``_load_from_checkpoint``, which
    ``Trainer.train(resume_from_checkpoint=...)`` calls, loads every weight or fails."""

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        trainer: Any = self
        parent: Any = super()
        if trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled:
            # Sharded formats of their own, loaded by accelerate.
            parent._load_from_checkpoint(resume_from_checkpoint, model)
            return
        target = trainer.model if model is None else model
        folder = Path(resume_from_checkpoint)
        if hasattr(target, "peft_config"):
            parent._load_from_checkpoint(resume_from_checkpoint, model)
            check_adapter_weights(target, folder)
        else:
            load_checkpoint_weights(target, folder)


@functools.cache
def exact_resume(trainer_class: type) -> type:
    """``trainer_class`` with ``ExactResume`` mixed in (one subclass per class)."""
    return type(trainer_class.__name__, (ExactResume, trainer_class), {})


def load_checkpoint_weights(model: Any, folder: Path) -> int:
    """Copy the weights saved in ``folder`` (``model.safetensors``, or its shards) into
    ``model``, renaming keys as ``from_pretrained`` does; the number of tensors loaded. A
    checkpoint tensor with no place in the model, a model weight the checkpoint lacks (tied
    weights count once) or a shape that differs is a one-line error, and nothing is loaded."""
    import torch
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key

    saved = _read_safetensors(folder)
    own = model.state_dict(keep_vars=True)
    conversions = getattr(model, "_weight_conversions", None)
    if conversions is None:
        conversions = get_model_conversion_mapping(model)
    renamings = [c for c in conversions if isinstance(c, WeightRenaming)]
    converters = [c for c in conversions if isinstance(c, WeightConverter)]
    prefix = model.base_model_prefix
    targets: dict[str, str] = {}
    for key in saved:
        name, converted = rename_source_key(key, renamings, converters, prefix, own)
        if name not in own and key in own:
            name, converted = key, None
        if converted is not None:
            raise VlaaError(
                f"--resume: {folder.name}/{key} is stored fused or split ({converted}); "
                "resuming such a checkpoint is not supported"
            )
        if name not in own:
            raise VlaaError(
                f"--resume: {folder.name} holds {key}, which has no place in the model "
                f"({len(saved)} tensors in the checkpoint, {len(own)} in the model)"
            )
        if tuple(saved[key].shape) != tuple(own[name].shape):
            raise VlaaError(
                f"--resume: {folder.name}/{key} has shape {tuple(saved[key].shape)}, "
                f"the model's {name} {tuple(own[name].shape)}"
            )
        targets[key] = name
    loaded = {id(own[name]) for name in targets.values()}
    missing = [name for name, tensor in own.items() if id(tensor) not in loaded]
    if missing:
        raise VlaaError(
            f"--resume: {folder.name} lacks {len(missing)} of the model's {len(own)} weights "
            f"(first: {missing[0]})"
        )
    with torch.no_grad():
        for key, name in targets.items():
            own[name].copy_(saved[key])
    return len(targets)


def check_adapter_weights(model: Any, folder: Path) -> None:
    """A one-line error unless the adapter of the peft ``model`` equals the one saved in
    ``folder`` (``adapter_model.safetensors``), tensor for tensor."""
    import torch
    from peft import get_peft_model_state_dict
    from safetensors.torch import load_file

    path = folder / "adapter_model.safetensors"
    if not path.is_file():
        raise VlaaError(f"--resume: {folder} holds no adapter_model.safetensors")
    saved = load_file(str(path))
    own = get_peft_model_state_dict(model)
    if set(saved) != set(own):
        odd = sorted(set(saved) ^ set(own))
        raise VlaaError(
            f"--resume: the adapter in {folder.name} and the model's differ in "
            f"{len(odd)} tensors (first: {odd[0]})"
        )
    for key, tensor in saved.items():
        if not torch.equal(tensor.to(own[key].device, own[key].dtype), own[key]):
            raise VlaaError(f"--resume: {folder.name}/{key} did not load into the model")


def _read_safetensors(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    single = folder / "model.safetensors"
    index = folder / "model.safetensors.index.json"
    if single.is_file():
        return load_file(str(single), device="cpu")
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        tensors: dict[str, Any] = {}
        for shard in shards:
            tensors.update(load_file(str(folder / shard), device="cpu"))
        return tensors
    raise VlaaError(f"--resume: {folder} holds no model.safetensors to resume from")
