"""Loading a Hugging Face model and its processor: for in-process generation, perplexity, training.

torch and transformers are optional (the ``train`` extra), so they are imported inside the
functions here; ``require`` turns a missing package into a ``VlaaError`` naming the extra.

Qwen2-VL style processors in transformers 5 insist on a video processor, which needs
torchvision; without it ``AutoProcessor`` returns the bare tokenizer or fails, depending on the
saved folder. ``load_processor`` then loads the processor through a subclass that goes without
video (``processor_without_video``).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

from vlaa_data.errors import VlaaError

if TYPE_CHECKING:
    from transformers import ProcessorMixin

__all__ = [
    "is_vision_language",
    "load_model_and_processor",
    "load_processor",
    "processor_without_video",
    "require",
    "resolve_device",
    "resolve_dtype",
]

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
    if is_vision_language(config):
        model_class = transformers.AutoModelForImageTextToText
        processor = load_processor(model, config)
    else:
        model_class = transformers.AutoModelForCausalLM
        processor = transformers.AutoTokenizer.from_pretrained(str(model))
    loaded = model_class.from_pretrained(str(model), dtype=torch_dtype)
    return loaded.to(device).eval(), processor


def is_vision_language(config: Any) -> bool:
    """Whether ``config`` belongs to a model that ``AutoModelForImageTextToText`` loads."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING

    return type(config) in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING


def load_processor(model: str | Path, config: Any = None) -> Any:
    """The processor of a vision-language model, going without video where it must.

    That is when torchvision is missing, or when ``AutoProcessor`` fails or gives only the
    tokenizer for a processor class that wants a video processor (a folder saved without one,
    like the tiny test model's).
    """
    transformers = require("transformers", "train", "a local model")
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    config = config if config is not None else _load_config(model)
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


def _load_config(model: str | Path) -> Any:
    transformers = require("transformers", "train", "a local model")
    try:
        return transformers.AutoConfig.from_pretrained(str(model))
    except (OSError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VlaaError(f"cannot load model {str(model)!r}: {first_line}") from exc
