"""Workspace images as ``data:`` URLs for OpenAI-compatible endpoints, downscaled to a pixel cap,
and requests in the wire format that carries them (``ImageEncoder.payload``).

An image within the cap, in a format every endpoint reads (PNG, JPEG, WEBP, GIF), is sent as
its original bytes; anything else is decoded, scaled down keeping its aspect ratio and
re-encoded. Failures raise ``CallFailed`` with one more reason code than ``reply`` lists:

    image_unreadable    the workspace image file is missing or cannot be decoded (not retried)
"""

from __future__ import annotations

import asyncio
import base64
import io
import math
from collections import OrderedDict
from typing import Any

from PIL import Image, ImageOps

from vlaa_data.llm.reply import CallFailed
from vlaa_data.llm.request import ChatRequest, ImagePart

__all__ = ["ImageEncoder", "encode_data_url"]

_PASSTHROUGH = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_EXIF_ORIENTATION = 0x0112


def encode_data_url(part: ImagePart, max_pixels: int | None) -> str:
    """The image of ``part`` as a data URL with at most ``max_pixels`` pixels (``None``: no cap).

    Raises ``CallFailed("image_unreadable")`` for a missing or undecodable file.
    """
    try:
        data = part.path.read_bytes()
    except OSError as exc:
        raise CallFailed("image_unreadable", f"{part.path}: {exc.strerror or exc}") from None
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            within_cap = max_pixels is None or width * height <= max_pixels
            if within_cap and image.format in _PASSTHROUGH:
                # The store validated the whole image at collect time; the header is enough here.
                return _data_url(_PASSTHROUGH[image.format], data)
            return _reencode(image, max_pixels)
    except CallFailed:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise CallFailed("image_unreadable", f"{part.path}: {exc}") from None


def _reencode(image: Image.Image, max_pixels: int | None) -> str:
    width, height = image.size
    keep_png = image.format == "PNG" or image.mode == "P" or _has_alpha(image)
    target = (width, height)
    if max_pixels is not None and width * height > max_pixels:
        scale = math.sqrt(max_pixels / (width * height))
        target = (max(1, math.floor(width * scale)), max(1, math.floor(height * scale)))
        # JPEG can decode at 1/2, 1/4 or 1/8 size directly, much faster than full size.
        image.draft("RGB", target)
    # Re-encoding drops EXIF, so turn the pixels upright the way viewers would have shown them.
    orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    if orientation != 1:
        image = ImageOps.exif_transpose(image)
        if orientation in (5, 6, 7, 8):
            target = (target[1], target[0])
    if _has_alpha(image):
        image = image.convert("RGBA")
    elif image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    if image.size != target:
        image = image.resize(target, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    if keep_png:
        image.save(buffer, format="PNG")
        return _data_url("image/png", buffer.getvalue())
    image.save(buffer, format="JPEG", quality=90)
    return _data_url("image/jpeg", buffer.getvalue())


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in _ALPHA_MODES or "transparency" in image.info


def _data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


class ImageEncoder:
    """``encode_data_url`` in a worker thread, with an LRU of recent results.

    Results are keyed by ``(sha, max_pixels)``; concurrent requests for the same image share one
    encoding. The cache holds at most ``max_entries`` URLs and ``max_bytes`` characters of them.
    """

    def __init__(self, max_entries: int = 256, max_bytes: int = 256 * 2**20) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._cache: OrderedDict[tuple[str, int | None], str] = OrderedDict()
        self._cached_bytes = 0
        self._pending: dict[tuple[str, int | None], asyncio.Future[str]] = {}

    async def encode(self, part: ImagePart, max_pixels: int | None) -> str:
        key = (part.sha, max_pixels)
        url = self._cache.get(key)
        if url is not None:
            self._cache.move_to_end(key)
            return url
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(asyncio.to_thread(encode_data_url, part, max_pixels))
            self._pending[key] = pending
            pending.add_done_callback(lambda done: self._settle(key, done))
        # One waiter being cancelled must not cancel the encoding the others wait for.
        return await asyncio.shield(pending)

    async def payload(self, request: ChatRequest, max_pixels: int | None) -> dict[str, Any]:
        """The body of ``POST /chat/completions`` for ``request``: images as data URLs."""
        messages = request.messages
        # Only requests with content lists can hold images; text-only ones skip all of this.
        if any(isinstance(m.get("content"), list) for m in messages):
            messages = [await self._wire_message(m, max_pixels) for m in messages]
        return {"model": request.model, "messages": messages, **request.params}

    async def _wire_message(self, message: dict[str, Any], max_pixels: int | None) -> dict:
        content = message.get("content")
        if not isinstance(content, list) or not any(p.get("type") == "image" for p in content):
            return message
        parts = await asyncio.gather(*(self._wire_part(p, max_pixels) for p in content))
        return {**message, "content": list(parts)}

    async def _wire_part(self, part: dict[str, Any], max_pixels: int | None) -> dict:
        if part.get("type") != "image":
            return part
        url = await self.encode(part["image"], max_pixels)
        return {"type": "image_url", "image_url": {"url": url}}

    def _settle(self, key: tuple[str, int | None], done: asyncio.Future[str]) -> None:
        self._pending.pop(key, None)
        if done.cancelled() or done.exception() is not None:
            return
        url = done.result()
        if len(url) > self.max_bytes or self.max_entries <= 0:
            return
        self._cache[key] = url
        self._cached_bytes += len(url)
        while len(self._cache) > self.max_entries or self._cached_bytes > self.max_bytes:
            _, evicted = self._cache.popitem(last=False)
            self._cached_bytes -= len(evicted)
