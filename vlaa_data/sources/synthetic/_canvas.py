"""Drawing helpers shared by the synthetic kinds: palette, font, layout and PNG encoding.

Images are palette PNGs drawn without anti-aliasing, in exact colours, so tests (and anyone
curious) can find every object again from its pixels.
"""

from __future__ import annotations

import functools
import io
import math
import random

from PIL import Image, ImageDraw, ImageFont

__all__ = ["COLOURS", "INKS", "Box", "canvas", "font", "label", "place_boxes", "to_png"]

#: CLEVR's eight colours, by the names its questions use.
COLOURS: dict[str, tuple[int, int, int]] = {
    "gray": (87, 87, 87),
    "red": (173, 35, 35),
    "blue": (42, 75, 215),
    "green": (29, 105, 20),
    "brown": (129, 74, 25),
    "purple": (129, 38, 192),
    "cyan": (41, 208, 208),
    "yellow": (255, 238, 51),
}

#: Colours that stand out on white, for plot lines and chart bars.
INKS: dict[str, tuple[int, int, int]] = {
    "red": (200, 30, 30),
    "blue": (30, 70, 210),
    "green": (20, 130, 40),
    "purple": (130, 40, 190),
    "orange": (230, 120, 0),
    "magenta": (200, 0, 160),
    "teal": (0, 128, 128),
    "brown": (130, 75, 25),
}

#: A pixel box ``(x1, y1, x2, y2)``; x2 and y2 are exclusive, so x2 - x1 is the width.
Box = tuple[int, int, int, int]


@functools.cache
def font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font: needs no file and no network.

    At 12 px, because at its default 10 px a space is 2 px wide and words run together. Without
    FreeType only the small bitmap font exists, so fall back to that.
    """
    try:
        return ImageFont.load_default(size=12)
    except (ImportError, OSError, TypeError):
        return ImageFont.load_default()


def canvas(size: tuple[int, int], background: tuple[int, int, int]) -> Image.Image:
    """A blank palette image. Palette PNGs encode about eight times faster than RGB ones (a
    third of the bytes to deflate, no row filters), and these drawings use a dozen colours."""
    return Image.new("P", size, background)


@functools.lru_cache(maxsize=4096)
def _text_mask(text: str) -> Image.Image:
    # Labels repeat a lot ("0", "10", "Jan"); rasterising each once makes text nearly free.
    # Mode "1": palette images get no anti-aliasing, which at 12 px also reads crisper.
    # getbbox measures the anti-aliased glyphs; the bilevel ones can reach a pixel or two
    # further, so draw with room to spare and crop to what was drawn.
    left, top, right, bottom = font().getbbox(text)
    mask = Image.new("1", (math.ceil(right - left) + 8, math.ceil(bottom - top) + 8))
    ImageDraw.Draw(mask).text((4 - left, 4 - top), text, fill=1, font=font())
    box = mask.getbbox()
    return mask.crop(box) if box else mask
    return mask


def label(
    image: Image.Image, x: float, y: float, text: str, fill: tuple[int, int, int], anchor: str
) -> None:
    """Draw ``text`` anchored at (x, y) like Pillow's two-letter anchors ("mt", "rm", "mb")."""
    mask = _text_mask(text)
    dx = {"l": 0, "m": mask.width / 2, "r": mask.width}[anchor[0]]
    dy = {"t": 0, "m": mask.height / 2, "b": mask.height}[anchor[1]]
    if image.palette is None:
        raise ValueError(f"label() draws on a palette image (canvas()), not mode {image.mode}")
    index = image.palette.getcolor(fill, image)
    image.paste(index, (round(x - dx), round(y - dy)), mask)


def to_png(image: Image.Image) -> bytes:
    # Level 1: on flat drawings it is much faster than the default 6 and barely larger. The
    # output is deterministic for a given Pillow and zlib.
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def place_boxes(
    rng: random.Random,
    sizes: list[tuple[int, int]],
    width: int,
    height: int,
    *,
    gap: int = 3,
    margin: int = 4,
) -> list[Box]:
    """Non-overlapping boxes of the given (w, h) sizes, at least ``gap`` pixels apart.

    Random placement with rejection; if a box finds no room, the whole layout starts over
    (still drawing from ``rng``, so the result stays a function of the seed).
    """
    for _ in range(100):
        boxes: list[Box] = []
        for w, h in sizes:
            for _ in range(200):
                x = rng.randint(margin, width - margin - w)
                y = rng.randint(margin, height - margin - h)
                box = (x, y, x + w, y + h)
                if all(_apart(box, other, gap) for other in boxes):
                    boxes.append(box)
                    break
            else:
                break
        else:
            return boxes
    raise RuntimeError(f"cannot place {len(sizes)} boxes on {width}x{height}")


def _apart(a: Box, b: Box, gap: int) -> bool:
    return a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1]
