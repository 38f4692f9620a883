"""A chat request as the steps build it, before any backend sees it.

Images are referenced by content sha, never inlined: the cache key hashes the sha (and the
downscale cap), so a request's key is cheap to compute and independent of how the image is
encoded for the wire. Backends turn image parts into what they speak (a data URL for HTTP, a
PIL image for in-process models).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

__all__ = ["ChatRequest", "ImagePart", "image_part"]


@dataclass(frozen=True)
class ImagePart:
    """An image in a message: its sha and where the workspace keeps it."""

    sha: str
    path: Path
    width: int
    height: int


def image_part(sha: str, path: Path, width: int, height: int) -> dict[str, Any]:
    """A message content part that refers to a workspace image."""
    return {"type": "image", "image": ImagePart(sha, path, width, height)}


@dataclass
class ChatRequest:
    """One chat completion to obtain.

    ``messages`` follow the OpenAI chat format, except that an image is a content part
    ``{"type": "image", "image": ImagePart}`` (see ``image_part``). ``params`` are the sampling
    parameters sent as they are (``max_tokens``, ``temperature``, ...). ``max_pixels`` is the
    cap images are downscaled to before sending; it changes what the model sees, so it is part
    of the key.
    """

    model: str
    messages: list[dict[str, Any]]
    params: dict[str, Any] = field(default_factory=dict)
    max_pixels: int | None = None
    sample_id: str = ""

    def images(self) -> list[ImagePart]:
        found: list[ImagePart] = []
        for message in self.messages:
            content = message.get("content")
            if isinstance(content, list):
                found.extend(p["image"] for p in content if p.get("type") == "image")
        return found

    def text(self) -> str:
        """All text of the messages, for token estimates."""
        parts = []
        for message in self.messages:
            content = message.get("content")
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts.extend(p.get("text", "") for p in content if p.get("type") == "text")
        return "\n".join(parts)

    def rendered(self) -> dict[str, Any]:
        """The request as stored in the ledger and hashed: images by sha."""
        messages = []
        for message in self.messages:
            content = message.get("content")
            if isinstance(content, list):
                content = [_render_part(p) for p in content]
            messages.append({**message, "content": content})
        return {
            "model": self.model,
            "messages": messages,
            "params": self.params,
            "max_pixels": self.max_pixels,
        }

    @cached_property
    def rendered_json(self) -> str:
        """``rendered()`` as canonical JSON (sorted keys); computed once per request."""
        return json.dumps(self.rendered(), sort_keys=True, ensure_ascii=False, default=str)

    @cached_property
    def _key(self) -> str:
        return hashlib.sha256(self.rendered_json.encode("utf-8")).hexdigest()

    def key(self) -> str:
        """The cache key: sha256 of the rendered request (model id, messages, params)."""
        return self._key


def _render_part(part: dict[str, Any]) -> dict[str, Any]:
    if part.get("type") == "image":
        return {"type": "image_url", "image_url": {"url": f"sha256:{part['image'].sha}"}}
    return part
