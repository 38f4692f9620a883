"""Trainer configs: TRL's ``SFTConfig``/``GRPOConfig`` plus our fields, filled from a recipe.

A recipe is a flat TOML or YAML file of config fields (the shipped ones are
``vlaa_data/recipes/{sft,grpo}.toml``). ``load_config`` reads it, lays the command line's values
over it (explicit flags, then ``--set KEY=VALUE`` pairs parsed by the field's type), refuses
unknown keys with the nearest names, and fills what depends on the machine: bf16 on CUDA and
``use_cpu`` without it, ``report_to="none"``, and the gradient accumulation that
``global_batch_size`` implies for the ``WORLD_SIZE`` that ``accelerate launch`` sets.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import json
import os
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlaa_data.errors import SettingsError
from vlaa_data.hf import require

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

require("trl", "train", "training")
from trl import GRPOConfig, SFTConfig  # noqa: E402  (after the check that names the extra)

__all__ = [
    "KINDS",
    "KL_CONTROLS",
    "GrpoTrainConfig",
    "SftTrainConfig",
    "TrainConfig",
    "load_config",
    "parse_setting",
    "read_recipe",
    "shipped_recipe",
]

# LoRA on the language model's projections only: the vision blocks of Qwen2-VL and most VLMs
# name theirs otherwise (qkv, proj, fc1, fc2), so "all-linear" would adapt the frozen tower too.
_LANGUAGE_PROJECTIONS = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
]


KL_CONTROLS = ("fixed", "linear", "adaptive")


@dataclass
class _OurFields:
    """What vlaa-data adds to both TRL configs."""

    train_vision: bool = field(
        default=False, metadata={"help": "Train the vision encoder (frozen by default)."}
    )
    train_projector: bool = field(
        default=True,
        metadata={"help": "Train the vision-language projector (Qwen2-VL's merger)."},
    )
    lora: bool = field(default=False, metadata={"help": "Train LoRA adapters through peft."})
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: list[str] = field(default_factory=lambda: list(_LANGUAGE_PROJECTIONS))
    merge: bool = field(
        default=False,
        metadata={
            "help": "With lora: save the model with the adapter merged in the output dir, the "
            "adapter in its adapter/ folder."
        },
    )
    global_batch_size: int | None = field(
        default=None,
        metadata={
            "help": "Examples (GRPO: completions) per optimizer step over all processes; sets "
            "gradient_accumulation_steps = global / (per device x WORLD_SIZE)."
        },
    )
    max_pixels: int | None = field(
        default=None,
        metadata={
            "help": "Resize each image to at most this many pixels (the max_pixels of "
            "Qwen2-VL-style processors); None: the model's own limit."
        },
    )


@dataclass
class SftTrainConfig(_OurFields, SFTConfig):
    # Truncation would cut image tokens out of a VLM's prompt: no limit unless asked for.
    max_length: int | None = None


@dataclass
class GrpoTrainConfig(_OurFields, GRPOConfig):
    kl_control: str = field(
        default="fixed",
        metadata={
            "help": "How the KL coefficient moves from beta: fixed, linear (to beta_final by the "
            "last step) or adaptive (OpenRLHF's controller, towards kl_target)."
        },
    )
    beta_final: float | None = field(
        default=None,
        metadata={"help": "kl_control linear: the KL coefficient at the last step."},
    )
    kl_target: float | None = field(
        default=None,
        metadata={"help": "kl_control adaptive: the KL divergence the coefficient steers to."},
    )
    kl_horizon: int = field(
        default=10000,
        metadata={
            "help": "kl_control adaptive: completions over which a KL off target by 20% or "
            "more changes the coefficient by 20%."
        },
    )
    judge: str | None = field(default=None, metadata={"help": "Preset grading open-ended rows."})
    judge_base_url: str | None = None
    reward_model: str | None = field(
        default=None, metadata={"help": "Reward-model checkpoint scoring open-ended rows."}
    )
    reward_beta: float = 1.0
    math_deadline_s: float = 2.0
    strict_format: bool = field(
        default=True,
        metadata={
            "help": "Reward only answers in the paper's format (the last <answer> block after "
            "</think>; else 0). False reads answers as verify does."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kl_control not in KL_CONTROLS:
            raise ValueError(
                f"kl_control: {self.kl_control!r} is not one of {', '.join(KL_CONTROLS)}"
            )
        if self.kl_control != "fixed" and self.beta <= 0:
            raise ValueError(f"kl_control {self.kl_control} needs beta > 0 to move it from")
        if (self.kl_control == "linear") != (self.beta_final is not None):
            raise ValueError("beta_final goes with kl_control linear, which needs it")
        if self.kl_control == "adaptive" and not (self.kl_target or 0) > 0:
            raise ValueError("kl_control adaptive needs kl_target > 0")
        if self.kl_horizon < 1:
            raise ValueError(f"kl_horizon: must be at least 1, got {self.kl_horizon}")


TrainConfig = SftTrainConfig | GrpoTrainConfig
KINDS: dict[str, type[SftTrainConfig] | type[GrpoTrainConfig]] = {
    "sft": SftTrainConfig,
    "grpo": GrpoTrainConfig,
}


def shipped_recipe(kind: str) -> Path:
    """The recipe shipped with vlaa-data for ``kind`` (``sft`` or ``grpo``)."""
    return Path(__file__).resolve().parent.parent / "recipes" / f"{kind}.toml"


def read_recipe(path: Path) -> dict[str, Any]:
    """A flat mapping of config fields from a ``.toml``, ``.yaml`` or ``.yml`` file."""
    if not path.is_file():
        raise SettingsError(f"no such recipe: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            raise SettingsError(f"{path}: a recipe is a .toml, .yaml or .yml file")
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SettingsError(f"{path}: {first}") from exc
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: a recipe is a mapping of config fields")
    return data


def load_config(
    kind: str,
    recipe: Path | None = None,
    values: Mapping[str, Any] | None = None,
    settings: Sequence[str] = (),
    *,
    cuda: bool | None = None,
    world_size: int | None = None,
) -> TrainConfig:
    """The ``kind`` config from ``recipe`` (default: the shipped one), then ``values`` (flags,
    None meaning "not given"), then ``settings`` (``KEY=VALUE``). ``cuda`` and ``world_size``
    default to the machine's (``WORLD_SIZE`` from the environment)."""
    cls = KINDS[kind]
    path = recipe or shipped_recipe(kind)
    data = read_recipe(path)
    _check_keys(cls, data, f"{path}: ")
    data.update({key: value for key, value in (values or {}).items() if value is not None})
    hints = _field_types(cls)
    for setting in settings:
        key, value = _split_setting(setting)
        _check_keys(cls, {key: value}, "--set ")
        data[key] = parse_setting(key, value, hints[key])
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    data.setdefault("bf16", cuda)
    data.setdefault("use_cpu", not cuda)
    data.setdefault("report_to", "none")
    if world_size is None:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
    _accumulate_to_global(cls, data, world_size)
    try:
        return cls(**data)
    except (ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SettingsError(f"{kind} config: {first}") from exc


def parse_setting(key: str, text: str, annotation: Any) -> Any:
    """``text`` read as the field's type: ``none``/``null`` for an optional field, booleans as
    true/false, numbers, JSON (or YAML flow) for lists and mappings, else the string itself."""
    options = _union_members(annotation)
    if text.strip().lower() in ("none", "null") and type(None) in options:
        return None
    for option in sorted(options, key=_parse_order):
        parsed = _parse_as(text, option)
        if parsed is not _UNREAD:
            return parsed
    names = " | ".join(getattr(o, "__name__", str(o)) for o in options)
    raise SettingsError(f"--set {key}: cannot read {text!r} as {names}")


_UNREAD = object()
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _parse_as(text: str, option: Any) -> Any:
    origin = typing.get_origin(option) or option
    stripped = text.strip()
    if origin is bool:
        word = stripped.lower()
        return True if word in _TRUE else False if word in _FALSE else _UNREAD
    if origin in (int, float):
        try:
            return origin(stripped)
        except ValueError:
            return _UNREAD
    if origin in (list, dict):
        value = _structured(stripped)
        if origin is list and isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return value if isinstance(value, origin) else _UNREAD
    if isinstance(origin, type) and issubclass(origin, (str, enum.Enum)):
        return text
    return _UNREAD


def _structured(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError:
            return _UNREAD


def _parse_order(option: Any) -> int:
    # Strings accept anything, so they are tried last; None was handled before.
    origin = typing.get_origin(option) or option
    order = [bool, int, float, list, dict]
    return order.index(origin) if origin in order else len(order)


def _union_members(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, f.type) for f in dataclasses.fields(cls) if f.init}


def _split_setting(setting: str) -> tuple[str, str]:
    key, sep, value = setting.partition("=")
    if not sep or not key.strip():
        raise SettingsError(f"--set takes KEY=VALUE, not {setting!r}")
    return key.strip(), value


def _check_keys(cls: type, data: Mapping[str, Any], where: str) -> None:
    known = [f.name for f in dataclasses.fields(cls) if f.init]
    for key in data:
        if key not in known:
            near = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            raise SettingsError(f"{where}unknown {cls.__name__} field {key!r}{hint}")


def _accumulate_to_global(cls: type, data: dict[str, Any], world_size: int) -> None:
    """gradient_accumulation_steps from global_batch_size, per-device batch and world size."""
    total = data.get("global_batch_size")
    if total is None:
        return
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    per_device = int(
        data.get("per_device_train_batch_size", defaults["per_device_train_batch_size"])
    )
    step = per_device * world_size
    if total % step:
        raise SettingsError(
            f"global_batch_size {total} is not a multiple of per_device_train_batch_size "
            f"{per_device} x world size {world_size}"
        )
    data["gradient_accumulation_steps"] = total // step
