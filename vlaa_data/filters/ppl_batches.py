"""Model inputs of a PPL batch built from conversations tokenized once, for Qwen2-VL processors.

``Qwen2VLProcessor(text=..., images=...)`` widens each ``<|image_pad|>`` in the text into as many
copies as the image has merged patches, then tokenizes the widened text. The PPL filter has
already tokenized every conversation once (to count its assistant tokens), and the widening only
repeats a special token, which the tokenizer never merges with its neighbours: splicing the
copies into the token ids gives the processor's ``input_ids`` without its text path, which
costs as much per sample as a tiny model's forward pass. Only the image processor still runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["can_splice", "spliced_inputs"]


def can_splice(processor: Any) -> bool:
    """Whether ``processor`` widens one image token by the image's grid, as Qwen2-VL's does."""
    return (
        isinstance(getattr(processor, "image_token_id", None), int)
        and isinstance(getattr(processor.image_processor, "merge_size", None), int)
        and processor.tokenizer.pad_token_id is not None
    )


def spliced_inputs(
    processor: Any, token_ids: Sequence[Sequence[int]], images: Sequence[Any]
) -> dict[str, Any]:
    """What ``processor(text=texts, images=images, padding=True, add_special_tokens=False,
    return_tensors="pt")`` returns, right-padded, for ``token_ids`` the tokenized texts, each
    holding exactly one image token for its image."""
    import torch

    pixels = processor.image_processor(images=list(images), return_tensors="pt")
    grids = pixels["image_grid_thw"]
    widths = (grids.prod(dim=-1) // processor.image_processor.merge_size**2).tolist()
    image_id = processor.image_token_id
    rows = []
    for ids, width in zip(token_ids, widths, strict=True):
        ids = list(ids)
        if ids.count(image_id) != 1:  # the processor would misplace images across samples
            raise ValueError(f"expected one image token in the text, found {ids.count(image_id)}")
        at = ids.index(image_id)
        rows.append(ids[:at] + [image_id] * width + ids[at + 1 :])
    length = max(map(len, rows))
    input_ids = torch.full((len(rows), length), processor.tokenizer.pad_token_id)
    attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
    for row, ids in enumerate(rows):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
    # M-RoPE finds the image positions by these types: 1 image, 2 video, 0 text.
    types = (input_ids == image_id).long()
    video_id = getattr(processor, "video_token_id", None)
    if isinstance(video_id, int):
        types[input_ids == video_id] = 2
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "mm_token_type_ids": types,
        "pixel_values": pixels["pixel_values"],
        "image_grid_thw": grids,
    }
