"""Function plots (Math PUMA spirit): a line or parabola on labelled axes; "What is the equation?".

Coefficients are small integers and the grid has a line at every integer x, so the curve's
values at integer x can be read off and the equation recovered exactly.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from PIL import ImageDraw

from vlaa_data.sources.synthetic._canvas import INKS, canvas, label, to_png

__all__ = [
    "REWARD_TYPE",
    "Scene",
    "answer",
    "equation",
    "make_scene",
    "question",
    "render",
    "to_pixel",
]

REWARD_TYPE = "math"
_Y_STEPS = (1, 2, 5, 10, 20, 25, 50)
_GRID, _AXIS, _INK = (225, 225, 225), (140, 140, 140), (40, 40, 40)


@dataclass(frozen=True)
class Scene:
    coefficients: tuple[int, int, int]  # of x^2, x, 1
    x_range: tuple[int, int]
    y_range: tuple[int, int]
    y_step: int
    size: tuple[int, int]
    area: tuple[int, int, int, int]  # the plot frame in pixels: left, top, right, bottom
    colour: str
    line_width: int
    grid: bool


def make_scene(rng: random.Random) -> Scene:
    if rng.random() < 0.5:
        coefficients = (0, rng.choice([-3, -2, -1, 1, 2, 3]), rng.randint(-5, 5))
        half = rng.randint(3, 6)
    else:
        a = rng.choice([-2, -1, 1, 2])
        coefficients = (a, rng.randint(-4, 4), rng.randint(-5, 5))
        half = 3 if abs(a) == 2 else rng.randint(3, 4)  # keep the vertex region readable
    shift = rng.choice([-1, 0, 0, 1])
    x_range = (-half + shift, half + shift)
    y_range, y_step = _y_axis(coefficients, x_range)
    width, height = rng.randint(200, 256), rng.randint(176, 256)
    area = (
        rng.randint(28, 34),
        rng.randint(8, 14),
        width - rng.randint(8, 14),
        height - rng.randint(18, 22),
    )
    return Scene(
        coefficients,
        x_range,
        y_range,
        y_step,
        (width, height),
        area,
        colour=rng.choice(list(INKS)),
        line_width=rng.choice([2, 2, 3]),
        grid=rng.random() < 0.8,
    )


def _y_axis(
    coefficients: tuple[int, int, int], x_range: tuple[int, int]
) -> tuple[tuple[int, int], int]:
    """A y range holding the curve and 0, in whole steps, with at most 8 steps."""
    a, b, _ = coefficients
    xs: list[float] = list(range(x_range[0], x_range[1] + 1))
    if a:
        xs.append(-b / (2 * a))  # the vertex, where a parabola turns
    ys = [_value(coefficients, x) for x in xs] + [0]
    low, high = min(ys), max(ys)
    for step in _Y_STEPS:
        bottom, top = math.floor(low / step) * step, math.ceil(high / step) * step
        if (top - bottom) / step <= 8:
            return (bottom, top), step
    raise AssertionError(f"no y step fits {coefficients} on {x_range}")


def _value(coefficients: tuple[int, int, int], x: float) -> float:
    a, b, c = coefficients
    return a * x * x + b * x + c


def equation(coefficients: tuple[int, int, int]) -> str:
    """``(1, 0, -3)`` -> "y = x^2 - 3": coefficient 1 omitted, zero terms dropped."""
    terms: list[str] = []
    for coefficient, power in zip(coefficients, ("x^2", "x", ""), strict=True):
        if coefficient:
            magnitude = "" if abs(coefficient) == 1 and power else str(abs(coefficient))
            terms.append(f"{'-' if coefficient < 0 else '+'} {magnitude}{power}")
    if not terms:
        return "y = 0"
    text = " ".join(terms)  # "- x^2 + 2x": the leading sign loses its space, a "+" vanishes
    return "y = " + (text[2:] if text[0] == "+" else "-" + text[2:])


def question(scene: Scene) -> str:
    low, high = scene.x_range
    return (
        f"The graph shows a function of x for {low} ≤ x ≤ {high}. What is the function's equation?"
    )


def answer(scene: Scene) -> str:
    return equation(scene.coefficients)


def to_pixel(scene: Scene, x: float, y: float) -> tuple[float, float]:
    """Where the point (x, y) lands in the image."""
    left, top, right, bottom = scene.area
    (x0, x1), (y0, y1) = scene.x_range, scene.y_range
    px = left + (x - x0) * (right - left) / (x1 - x0)
    py = bottom - (y - y0) * (bottom - top) / (y1 - y0)
    return px, py


def render(scene: Scene) -> bytes:
    image = canvas(scene.size, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = scene.area
    (x0, x1), (y0, y1) = scene.x_range, scene.y_range
    # Label every x only while the labels fit; grid lines stay at every integer.
    label_every = 1 if (right - left) / (x1 - x0) >= 18 else 2
    for x in range(x0, x1 + 1):
        px, _ = to_pixel(scene, x, 0)
        if scene.grid or x == 0:
            draw.line((px, top, px, bottom), fill=_AXIS if x == 0 else _GRID)
        if x % label_every == 0:
            label(image, px, bottom + 6, str(x), _INK, "mt")
    for y in range(y0, y1 + 1, scene.y_step):
        _, py = to_pixel(scene, 0, y)
        if scene.grid or y == 0:
            draw.line((left, py, right, py), fill=_AXIS if y == 0 else _GRID)
        label(image, left - 3, py, str(y), _INK, "rm")
    draw.rectangle(scene.area, outline=_INK)
    # One point per pixel column: smooth enough for a parabola, and cheap.
    xs = (x0 + (px - left) * (x1 - x0) / (right - left) for px in range(left, right + 1))
    points = [to_pixel(scene, x, _value(scene.coefficients, x)) for x in xs]
    draw.line(points, fill=INKS[scene.colour], width=scene.line_width)
    return to_png(image)
