"""Loading a Hugging Face model and its processor: for in-process generation, perplexity, training.

torch and transformers are optional (the ``train`` extra), so they are imported inside the
functions here; ``require`` turns a missing package into a ``VlaaError`` naming the extra.

Qwen2-VL style processors in transformers 5 insist on a video processor, which needs
torchvision; without it ``AutoProcessor`` returns the bare tokenizer or fails, depending on the
saved folder. ``load_processor`` then loads the processor through a subclass that goes without
video (``processor_without_video``).

A LoRA adapter folder (one holding ``adapter_config.json``, as ``train --lora`` writes) stands
for its base model with the adapter applied: ``load_model_and_processor`` loads the base named
in the adapter's config, applies the adapter with peft and merges it.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

from vlaa_data.errors import VlaaError

if TYPE_CHECKING:
    from transformers import ProcessorMixin

__all__ = [
    "ADAPTER_CONFIG",
    "DEFAULT_MAX_PIXELS",
    "adapter_base",
    "apply_adapter",
    "is_vision_language",
    "load_model_and_processor",
    "load_processor",
    "merge_adapter",
    "processor_without_video",
    "require",
    "resolve_device",
    "resolve_dtype",
    "set_max_pixels",
]

# The paper's evaluation setting: at most 256 x 32 x 32 pixels per image.
DEFAULT_MAX_PIXELS = 256 * 32 * 32

ADAPTER_CONFIG = "adapter_config.json"

_DTYPES = {
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
    "fp16": "float16",
    "float16": "float16",
    "half": "float16",
    "fp32": "float32",
    "float32": "float32",
    "float": "float32",
}


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module``, or raise a VlaaError telling which extra to install for ``purpose``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise VlaaError(
            f"{purpose} needs {module} ({exc}): pip install 'vlaa-data[{extra}]'"
        ) from exc


def resolve_device(device: str | None) -> str:
    """``device`` as given, else ``cuda`` when a GPU is visible, else ``cpu``."""
    if device:
        return device
    torch = require("torch", "train", "a local model")
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str | None, device: str) -> Any:
    """The torch dtype for ``dtype`` (``bf16``, ``fp16``, ...); None: bf16 on CUDA, else fp32."""
    torch = require("torch", "train", "a local model")
    if dtype is None:
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    name = _DTYPES.get(dtype.lower())
    if name is None:
        choices = ", ".join(sorted(_DTYPES))
        raise VlaaError(f"dtype: {dtype!r} is not one of {choices}")
    return getattr(torch, name)


def load_model_and_processor(
    model: str | Path, device: str | None = None, dtype: str | None = None
) -> tuple[Any, Any]:
    """Load ``model`` (a local folder or Hub id) for inference: ``(model, processor)``.

    Vision-language models come as ``AutoModelForImageTextToText`` with their processor; other
    models as ``AutoModelForCausalLM``, the "processor" being the tokenizer. The model is moved
    to ``device`` (default: CUDA when available), in eval mode, in ``dtype`` (default: bf16 on
    CUDA, float32 on CPU).
    """
    transformers = require("transformers", "train", "a local model")
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    config = _load_config(model)
    base = adapter_base(model)
    if is_vision_language(config):
        model_class = transformers.AutoModelForImageTextToText
        processor = load_processor(model, config)
    else:
        model_class = transformers.AutoModelForCausalLM
        processor = transformers.AutoTokenizer.from_pretrained(_processor_source(model))
    loaded = model_class.from_pretrained(base or str(model), dtype=torch_dtype)
    if base is not None:
        loaded = apply_adapter(loaded, model)
    return loaded.to(device).eval(), processor


def adapter_base(model: str | Path) -> str | None:
    """The base model that the LoRA adapter in folder ``model`` applies to (its config's
    ``base_model_name_or_path``), or None when ``model`` is not an adapter folder."""
    path = Path(model) / ADAPTER_CONFIG
    if not path.is_file():
        return None
    try:
        base = json.loads(path.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (ValueError, AttributeError) as exc:
        raise VlaaError(f"{path}: not a peft adapter config ({exc})") from exc
    if not base:
        raise VlaaError(f"{path}: names no base_model_name_or_path to apply the adapter to")
    return str(base)


def apply_adapter(model: Any, folder: str | Path, *, trainable: bool = False) -> Any:
    """``model`` with the adapter in ``folder`` applied: merged into its weights (a plain
    model again), or, with ``trainable``, as a peft model whose adapter trains on."""
    peft = require("peft", "train", "a LoRA adapter")
    adapted = peft.PeftModel.from_pretrained(model, str(folder), is_trainable=trainable)
    return adapted if trainable else adapted.merge_and_unload()


def merge_adapter(folder: str | Path, output: str | Path, dtype: Any = None) -> Path:
    """Save the adapter in ``folder`` merged into its base model, as a plain model folder
    (weights, config, generation config) in ``output``; the processor is the caller's to save.
    ``dtype`` is the torch dtype to load the base in (default: as saved)."""
    transformers = require("transformers", "train", "merging an adapter")
    base = adapter_base(folder)
    if base is None:
        raise VlaaError(f"{folder}: no {ADAPTER_CONFIG}, not a LoRA adapter folder")
    if is_vision_language(_load_config(base)):
        model_class = transformers.AutoModelForImageTextToText
    else:
        model_class = transformers.AutoModelForCausalLM
    model = model_class.from_pretrained(base, dtype=dtype if dtype is not None else "auto")
    apply_adapter(model, folder).save_pretrained(str(output))
    return Path(output)


def _processor_source(model: str | Path) -> str:
    """Where the processor of ``model`` is: an adapter folder's own copy (``train`` saves one
    beside the adapter), else its base model's; any other model's folder or id itself."""
    base = adapter_base(model)
    if base is None:
        return str(model)
    saved = ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json")
    return str(model) if any((Path(model) / name).is_file() for name in saved) else base


def is_vision_language(config: Any) -> bool:
    """Whether ``config`` belongs to a model that ``AutoModelForImageTextToText`` loads."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING

    return type(config) in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING


def load_processor(model: str | Path, config: Any = None) -> Any:
    """The processor of a vision-language model, going without video where it must.

    That is when torchvision is missing, or when ``AutoProcessor`` fails or gives only the
    tokenizer for a processor class that wants a video processor (a folder saved without one,
    like the tiny test model's). An adapter folder's processor is its own copy, else its base
    model's.
    """
    transformers = require("transformers", "train", "a local model")
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    config = config if config is not None else _load_config(model)
    model = _processor_source(model)
    class_name = PROCESSOR_MAPPING_NAMES.get(config.model_type)
    base = getattr(transformers, class_name, None) if isinstance(class_name, str) else None
    needs_video = base is not None and "video_processor" in base.get_attributes()
    if needs_video and importlib.util.find_spec("torchvision") is None:
        return processor_without_video(base).from_pretrained(str(model))
    try:
        processor = transformers.AutoProcessor.from_pretrained(str(model))
    except OSError:
        if not needs_video:
            raise
        processor = None
    if isinstance(processor, transformers.ProcessorMixin):
        return processor
    if needs_video:
        return processor_without_video(base).from_pretrained(str(model))
    raise VlaaError(
        f"{model}: AutoProcessor gave only a tokenizer for model type {config.model_type!r}"
    )


@functools.cache
def processor_without_video(base: type[ProcessorMixin]) -> type[ProcessorMixin]:
    """A subclass of the processor class ``base`` that is built without a video processor.

    transformers works out a processor's parts from its ``__init__`` signature, so leaving
    ``video_processor`` out of it makes ``from_pretrained`` skip the part that needs
    torchvision. The subclass keeps ``base``'s name so that saved folders name the usual class.
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        kwargs.pop("video_processor", None)
        base.__init__(
            self,
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=None,
            chat_template=chat_template,
            **kwargs,
        )

    subclass = type(base.__name__, (base,), {"__init__": __init__, "__module__": __name__})
    return cast("type[ProcessorMixin]", subclass)  # type() is typed as returning a bare type


def set_max_pixels(processor: Any, max_pixels: int | None) -> bool:
    """Cap the pixels of each image ``processor`` resizes to at ``max_pixels`` (None: leave it
    be); whether it applied.

    It applies to image processors that size images by a pixel budget, as Qwen2-VL's does
    (``size`` with ``shortest_edge`` and ``longest_edge`` counting pixels, and a
    ``merge_size``); the floor is lowered to the cap where it lies above it. Others keep their
    own sizing.
    """
    image_processor = getattr(processor, "image_processor", None)
    if max_pixels is None or image_processor is None or not hasattr(image_processor, "merge_size"):
        return False
    if max_pixels < 1:
        raise VlaaError(f"max_pixels: must be at least 1, got {max_pixels}")
    current = image_processor.size
    size = dict(current)  # a SizeDict iterates as its set (key, value) pairs
    if "shortest_edge" not in size or "longest_edge" not in size:
        return False
    size["longest_edge"] = max_pixels
    size["shortest_edge"] = min(size["shortest_edge"], max_pixels)
    image_processor.size = size if isinstance(current, dict) else type(current)(**size)
    return True


def _load_config(model: str | Path) -> Any:
    """The model's config; an adapter folder's is its base model's."""
    transformers = require("transformers", "train", "a local model")
    model = adapter_base(model) or model
    try:
        return transformers.AutoConfig.from_pretrained(str(model))
    except (OSError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VlaaError(f"cannot load model {str(model)!r}: {first_line}") from exc
