"""Grounding: a few coloured shapes; "Give the bounding box of the red circle".

Every shape in a scene has its own colour, so the target is unique, and the answer box is the
exact extent of its pixels: ``[x1, y1, x2, y2]`` with x2 and y2 exclusive (x2 - x1 = width).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import ImageDraw

from vlaa_data.sources.synthetic._canvas import COLOURS, canvas, place_boxes, to_png

__all__ = ["REWARD_TYPE", "SHAPES", "Item", "Scene", "answer", "make_scene", "question", "render"]

REWARD_TYPE = "iou"
SHAPES = ("square", "circle", "triangle", "diamond")


@dataclass(frozen=True)
class Item:
    shape: str
    colour: str
    box: tuple[int, int, int, int]


@dataclass(frozen=True)
class Scene:
    size: tuple[int, int]
    background: tuple[int, int, int]
    items: tuple[Item, ...]
    target: int  # index into items


def make_scene(rng: random.Random) -> Scene:
    width, height = rng.randint(192, 256), rng.randint(160, 256)
    count = rng.randint(3, 6)
    shapes = [rng.choice(SHAPES) for _ in range(count)]
    colours = rng.sample(list(COLOURS), count)
    sizes = []
    for shape in shapes:
        w = rng.randint(16, 64)
        # Squares and circles are as tall as wide; triangles and diamonds may be stretched.
        sizes.append((w, w) if shape in ("square", "circle") else (w, rng.randint(16, 64)))
    while True:
        try:
            boxes = place_boxes(rng, sizes, width, height)
            break
        except RuntimeError:  # too crowded (about 1 scene in 250,000): a larger canvas
            width, height = width + 32, height + 32
    level = rng.randint(230, 252)
    background = (level, min(255, level + rng.randint(0, 3)), level)
    items = tuple(Item(s, c, b) for s, c, b in zip(shapes, colours, boxes, strict=True))
    return Scene((width, height), background, items, rng.randrange(count))


def question(scene: Scene) -> str:
    item = scene.items[scene.target]
    width, height = scene.size
    return (
        f"The image is {width}x{height} pixels. Give the bounding box of the {item.colour} "
        f"{item.shape} as [x1, y1, x2, y2] in pixel coordinates."
    )


def answer(scene: Scene) -> str:
    return "[{}, {}, {}, {}]".format(*scene.items[scene.target].box)


def render(scene: Scene) -> bytes:
    image = canvas(scene.size, scene.background)
    draw = ImageDraw.Draw(image)
    for item in scene.items:
        colour = COLOURS[item.colour]
        # Pillow's coordinates are inclusive; the boxes' x2 and y2 are not.
        x1, y1, x2, y2 = item.box[0], item.box[1], item.box[2] - 1, item.box[3] - 1
        mx, my = x1 + (x2 - x1) // 2, y1 + (y2 - y1) // 2
        if item.shape == "square":
            draw.rectangle((x1, y1, x2, y2), fill=colour)
        elif item.shape == "circle":
            draw.ellipse((x1, y1, x2, y2), fill=colour)
        elif item.shape == "triangle":
            draw.polygon([(mx, y1), (x2, y2), (x1, y2)], fill=colour)
        else:
            draw.polygon([(mx, y1), (x2, my), (mx, y2), (x1, my)], fill=colour)
    return to_png(image)
