"""The content-addressed image store: ``images/ab/<sha256>.<ext>``, each image validated once.

Validation decodes the whole image with Pillow, so a truncated or corrupt file is caught at
collect time rather than in the middle of a paid caption run. Pillow's decompression-bomb guard
stays on, and a pixel cap and a byte cap reject oversized images before they are decoded.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

__all__ = ["ImageInfo", "ImageRejected", "ImageStore", "inspect_image"]

_EXTENSIONS = {
    "PNG": "png",
    "JPEG": "jpg",
    "GIF": "gif",
    "WEBP": "webp",
    "BMP": "bmp",
    "TIFF": "tif",
    "MPO": "jpg",
}


class ImageRejected(Exception):
    """An image that cannot become part of a sample; ``reason`` is a short code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ImageInfo:
    sha: str
    width: int
    height: int
    format: str
    bytes: int

    @property
    def relative_path(self) -> str:
        extension = _EXTENSIONS.get(self.format, self.format.lower())
        return f"images/{self.sha[:2]}/{self.sha}.{extension}"


def inspect_image(data: bytes, *, max_pixels: int, max_bytes: int) -> ImageInfo:
    """Hash and fully decode ``data``; raise ImageRejected with the reason it is unusable."""
    if not data:
        raise ImageRejected("image_empty", "the image has no bytes")
    if len(data) > max_bytes:
        raise ImageRejected("image_too_large", f"{len(data)} bytes > max {max_bytes}")
    try:
        with warnings.catch_warnings():
            # Pillow warns, rather than fails, between MAX_IMAGE_PIXELS and twice that.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageRejected(
                        "image_too_large", f"{width}x{height} pixels > max {max_pixels}"
                    )
                image_format = image.format or "UNKNOWN"
                image.load()
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected("image_too_large", str(exc)) from exc
    except UnidentifiedImageError as exc:
        raise ImageRejected("image_unreadable", "not an image Pillow can identify") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageRejected("image_corrupt", str(exc) or type(exc).__name__) from exc
    if image_format not in _EXTENSIONS:
        raise ImageRejected("image_unreadable", f"unsupported image format {image_format}")
    sha = hashlib.sha256(data).hexdigest()
    return ImageInfo(sha=sha, width=width, height=height, format=image_format, bytes=len(data))


class ImageStore:
    """Files under ``<workspace>/images``; writing the same bytes twice stores them once."""

    def __init__(self, workspace_root: Path) -> None:
        self.root = workspace_root
        self._directories: set[Path] = set()
        self._temp_names = itertools.count()

    def path_of(self, info: ImageInfo) -> Path:
        return self.root / info.relative_path

    def write(self, info: ImageInfo, data: bytes) -> Path:
        path = self.path_of(info)
        directory = path.parent
        if directory not in self._directories:
            directory.mkdir(parents=True, exist_ok=True)
            self._directories.add(directory)
        try:
            if os.stat(path).st_size == info.bytes:
                return path
        except FileNotFoundError:
            pass
        # Write then rename: a crash never leaves a half-written file under its final name.
        temp = directory / f".tmp-{os.getpid()}-{next(self._temp_names)}"
        try:
            with open(temp, "wb") as handle:
                handle.write(data)
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return path
