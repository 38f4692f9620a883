"""Which parts of a vision-language model train: the paper freezes the vision tower.

Parameters are told apart by the names of the modules that hold them, which the common VLM
families share: the vision encoder sits under ``visual`` (Qwen2-VL, Qwen2.5-VL),
``vision_tower`` (LLaVA, Gemma 3) or ``vision_model`` (Idefics, SmolVLM); the projector into
the language model is Qwen's ``merger`` (inside ``visual``), ``multi_modal_projector`` or
``connector``. The projector is told apart first, so that it can train while the encoder
around it stays frozen (``train_projector``, on by default, as LLaVA-style fine-tuning does).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from vlaa_data.errors import VlaaError

__all__ = ["PROJECTOR_MODULES", "VISION_MODULES", "FreezeReport", "freeze_vision", "part_of"]

VISION_MODULES = frozenset({"visual", "vision_tower", "vision_model", "vision_encoder"})
PROJECTOR_MODULES = frozenset({"merger", "multi_modal_projector", "mm_projector", "connector"})


@dataclass
class FreezeReport:
    trainable: int  # parameters (elements) left trainable
    frozen: int
    parts: dict[str, int]  # part -> parameters (elements): vision, projector, language


def part_of(name: str) -> str:
    """``projector``, ``vision`` or ``language`` for the parameter called ``name``."""
    modules = set(name.split("."))
    if modules & PROJECTOR_MODULES:
        return "projector"
    if modules & VISION_MODULES:
        return "vision"
    return "language"


def freeze_vision(model: Any, *, train_vision: bool, train_projector: bool) -> FreezeReport:
    """Freeze the vision encoder unless ``train_vision``, the projector unless
    ``train_projector``; the language model always trains. A model in which no vision
    parameter can be found is refused, rather than trained whole by mistake."""
    parts: Counter[str] = Counter()
    trainable = frozen = 0
    for name, parameter in model.named_parameters():
        part = part_of(name)
        parts[part] += parameter.numel()
        train = {"vision": train_vision, "projector": train_projector}.get(part, True)
        parameter.requires_grad_(train)
        if train:
            trainable += parameter.numel()
        else:
            frozen += parameter.numel()
    if not parts["vision"] and not train_vision:
        kind = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
        raise VlaaError(
            f"cannot find the vision encoder of {kind} (no module named "
            f"{', '.join(sorted(VISION_MODULES))}) to freeze; pass --train-vision to train it all"
        )
    return FreezeReport(trainable=trainable, frozen=frozen, parts=dict(parts))
