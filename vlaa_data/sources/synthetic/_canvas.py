"""Drawing helpers shared by the synthetic kinds: palette, font, layout and PNG encoding.

Shapes are drawn without anti-aliasing and in exact palette colours, so tests (and anyone
curious) can find every object again from its pixels.
"""

from __future__ import annotations

import functools
import io
import random

from PIL import Image, ImageDraw, ImageFont

__all__ = ["COLOURS", "INKS", "Box", "font", "label", "place_boxes", "to_png"]

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
    """Pillow's bundled font: needs no file and no network. Cached: loading it costs ~1 ms."""
    return ImageFont.load_default()


def label(
    draw: ImageDraw.ImageDraw, x: float, y: float, text: str, fill: object, anchor: str = "mt"
) -> None:
    """Draw ``text`` anchored at (x, y) like Pillow's two-letter anchors ("mt", "rm", "mb").

    Positioned by hand because Pillow's ``anchor`` works only for TrueType fonts, and the
    default font is a bitmap one where FreeType is missing.
    """
    left, top, right, bottom = font().getbbox(text)
    dx = {"l": 0, "m": (right - left) / 2, "r": right - left}[anchor[0]] + left
    dy = {"t": 0, "m": (bottom - top) / 2, "b": bottom - top}[anchor[1]] + top
    draw.text((round(x - dx), round(y - dy)), text, fill=fill, font=font())


def to_png(image: Image.Image) -> bytes:
    # Level 1 is several times faster than the default 6 and, on flat synthetic drawings,
    # barely larger; the output is still deterministic for a given Pillow and zlib.
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
