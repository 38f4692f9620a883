"""``max_pixels``: the image size the policy's processor resizes to in training."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("trl")

from vlaa_data.train.config import load_config
from vlaa_data.train.run import load_policy


@pytest.mark.parametrize("kind", ["sft", "grpo"])
def test_the_policys_processor_resizes_to_max_pixels(tiny_vlm: Path, kind: str) -> None:
    """A 400 x 400 image: the recipe's cap (256 x 32 x 32 pixels) makes 196 tokens of it, the
    tiny model's own (112 x 112) 16, a 56 x 56 cap 4."""

    def tokens(*settings: str) -> int:
        config = load_config(kind, settings=settings, cuda=False)
        _, processor = load_policy(str(tiny_vlm), config)
        counts = processor._get_num_multimodal_tokens(image_sizes=[(400, 400)])
        return counts["num_image_tokens"][0]

    assert tokens() == 196
    assert tokens("max_pixels=none") == 16
    assert tokens("max_pixels=3136") == 4
