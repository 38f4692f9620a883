"""CLEVR-Math-style counting: a few flat objects, then "Subtract all red cubes. How many ...?".

Cubes are squares, spheres circles, cylinders upright rectangles whose top ellipse is a lighter
tint of their colour. Objects never touch, so each one is a single blob of its colours.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import ImageDraw

from vlaa_data.sources.synthetic._canvas import COLOURS, canvas, place_boxes, to_png

__all__ = [
    "REWARD_TYPE",
    "SHAPES",
    "SIZES",
    "Object",
    "Operation",
    "Scene",
    "answer",
    "make_scene",
    "question",
    "render",
    "tint",
]

REWARD_TYPE = "digit"
WIDTH, HEIGHT = 256, 192
SHAPES = ("cube", "sphere", "cylinder")
SIZES = {"large": 36, "small": 22}


@dataclass(frozen=True)
class Object:
    shape: str
    colour: str
    size: str
    box: tuple[int, int, int, int]  # x2, y2 exclusive


@dataclass(frozen=True)
class Operation:
    """Subtract every object matching the set attributes, or add ``count`` new objects."""

    action: str  # "subtract" | "add"
    colour: str | None = None
    size: str | None = None
    shape: str | None = None
    count: int = 0

    def matches(self, obj: Object) -> bool:
        wanted = (self.colour, self.size, self.shape)
        return all(
            w is None or w == v
            for w, v in zip(wanted, (obj.colour, obj.size, obj.shape), strict=True)
        )

    def phrase(self) -> str:
        plural = self.action == "subtract" or self.count != 1
        noun = self.shape or "object"
        words = [w for w in (self.size, self.colour) if w] + [noun + ("s" if plural else "")]
        amount = "all" if self.action == "subtract" else str(self.count)
        return f"{self.action.capitalize()} {amount} {' '.join(words)}."


@dataclass(frozen=True)
class Scene:
    background: tuple[int, int, int]
    objects: tuple[Object, ...]
    operations: tuple[Operation, ...]


def make_scene(rng: random.Random) -> Scene:
    count = rng.randint(3, 10)
    specs = [
        (rng.choice(SHAPES), rng.choice(list(COLOURS)), rng.choice(list(SIZES)))
        for _ in range(count)
    ]
    sizes = [_extent(shape, size) for shape, _, size in specs]
    boxes = place_boxes(rng, sizes, WIDTH, HEIGHT)
    objects = tuple(Object(s, c, z, b) for (s, c, z), b in zip(specs, boxes, strict=True))
    level = rng.randint(226, 250)
    background = (level, level, min(255, level + rng.randint(0, 5)))
    return Scene(background, objects, _operations(rng, objects))


def _operations(rng: random.Random, objects: tuple[Object, ...]) -> tuple[Operation, ...]:
    roll = rng.random()
    subtractions = 0 if roll < 0.2 else 2 if roll < 0.4 else 1
    # dict.fromkeys: drop a second subtraction that repeats the first.
    ops = list(dict.fromkeys(_subtraction(rng, rng.choice(objects)) for _ in range(subtractions)))
    # Additions come last, so a subtraction never has to decide whether it removes added ones.
    if subtractions == 0 or roll > 0.9:
        ops.append(
            Operation(
                "add",
                colour=rng.choice([None, *COLOURS]),
                size=rng.choice([None, None, *SIZES]),
                shape=rng.choice(SHAPES),
                count=rng.randint(1, 3),
            )
        )
    return tuple(ops)


_DESCRIPTIONS = (
    ("colour", "shape"),
    ("size", "shape"),
    ("shape",),
    ("colour",),
    ("size", "colour", "shape"),
    ("size", "colour"),
)


def _subtraction(rng: random.Random, target: Object) -> Operation:
    # Always describe an object that is present, by a random subset of its attributes.
    keys = rng.choice(_DESCRIPTIONS)
    return Operation("subtract", **{k: getattr(target, k) for k in keys})


def question(scene: Scene) -> str:
    adds_last = scene.operations[-1].action == "add"
    ending = "How many objects exist?" if adds_last else "How many objects are left?"
    return " ".join([*(op.phrase() for op in scene.operations), ending])


def answer(scene: Scene) -> str:
    subtract = [op for op in scene.operations if op.action == "subtract"]
    left = sum(not any(op.matches(obj) for op in subtract) for obj in scene.objects)
    return str(left + sum(op.count for op in scene.operations if op.action == "add"))


def render(scene: Scene) -> bytes:
    image = canvas((WIDTH, HEIGHT), scene.background)
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        colour = COLOURS[obj.colour]
        x1, y1, x2, y2 = obj.box[0], obj.box[1], obj.box[2] - 1, obj.box[3] - 1
        if obj.shape == "cube":
            draw.rectangle((x1, y1, x2, y2), fill=colour)
        elif obj.shape == "sphere":
            draw.ellipse((x1, y1, x2, y2), fill=colour)
        else:
            cap = (x2 - x1) // 3  # the height of the top and bottom ellipses
            draw.rectangle((x1, y1 + cap // 2, x2, y2 - cap // 2), fill=colour)
            draw.ellipse((x1, y2 - cap, x2, y2), fill=colour)
            draw.ellipse((x1, y1, x2, y1 + cap), fill=tint(colour))
    return to_png(image)


def tint(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """The lighter colour of a cylinder's top."""
    red, green, blue = colour
    return (red + 255) // 2, (green + 255) // 2, (blue + 255) // 2


def _extent(shape: str, size: str) -> tuple[int, int]:
    side = SIZES[size]
    return (side * 3 // 4, side) if shape == "cylinder" else (side, side)
