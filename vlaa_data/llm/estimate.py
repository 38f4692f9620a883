"""Token estimates for requests not yet sent: for --dry-run, --budget-usd and --tpm.

Estimates, not counts: about four characters per text token, and images priced the way
OpenAI's vision models count them (512-pixel tiles after fitting the image into 2048x2048 and
its short side into 768). Replies report the real counts, which the ledger keeps.
"""

from __future__ import annotations

import math

from vlaa_data.llm.request import ChatRequest, ImagePart

__all__ = ["estimate_input_tokens", "image_tokens"]

_CHARS_PER_TOKEN = 4
_MESSAGE_OVERHEAD = 4


def image_tokens(width: int, height: int, max_pixels: int | None = None) -> int:
    if max_pixels and width * height > max_pixels:
        scale = math.sqrt(max_pixels / (width * height))
        width, height = max(1, int(width * scale)), max(1, int(height * scale))
    scale = min(1.0, 2048 / max(width, height))
    w, h = width * scale, height * scale
    scale = min(1.0, 768 / min(w, h))
    w, h = w * scale, h * scale
    tiles = math.ceil(w / 512) * math.ceil(h / 512)
    return 85 + 170 * tiles


def estimate_input_tokens(request: ChatRequest) -> int:
    text = request.text()
    images: list[ImagePart] = request.images()
    return (
        len(text) // _CHARS_PER_TOKEN
        + 1
        + _MESSAGE_OVERHEAD * len(request.messages)
        + sum(image_tokens(p.width, p.height, request.max_pixels) for p in images)
    )
