"""Bar charts with four-option questions: the highest bar, the lowest, or one bar's value.

Values within a chart are distinct, so "highest" and "lowest" each have exactly one answer, and
one value unit is at least one pixel, so the tallest drawn bar is the largest value.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import ImageDraw

from vlaa_data.sources.synthetic._canvas import INKS, canvas, label, to_png

__all__ = [
    "LETTERS",
    "REWARD_TYPE",
    "THEMES",
    "Scene",
    "answer",
    "bar_boxes",
    "make_scene",
    "plot_area",
    "question",
    "render",
]

REWARD_TYPE = "choice"
LETTERS = "ABCD"
# Short names (at most 30 px wide), so that six labels fit side by side under the bars.
THEMES: dict[str, tuple[str, ...]] = {
    "Fruit sold": ("Pear", "Plum", "Kiwi", "Lime", "Fig", "Date", "Nuts"),
    "Rainfall (mm)": ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct"),
    "Books read": ("Ana", "Ben", "Cleo", "Dev", "Eli", "Fay", "Gus", "Ivy", "Jon", "Kim"),
    "Visitors": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
    "Pets owned": ("Cats", "Dogs", "Fish", "Mice", "Hens", "Pigs"),
    "Goals scored": ("Owls", "Cubs", "Jets", "Suns", "Bees", "Elks", "Bats"),
}
_CALENDAR = ("Rainfall (mm)", "Visitors")  # months and weekdays keep their order
_SCALES = (10, 20, 50, 100)  # axis maxima; each split into 5 ticks
_TOP, _GRID, _INK = 30, (228, 228, 228), (40, 40, 40)


@dataclass(frozen=True)
class Scene:
    title: str
    categories: tuple[str, ...]
    values: tuple[int, ...]
    scale: int  # the y axis runs from 0 to scale
    colour: str
    size: tuple[int, int]
    bar_ratio: float  # bar width / slot width
    ask: str  # "highest" | "lowest" | "value"
    subject: str | None  # the category asked about when ask == "value"
    options: tuple[str, ...]


def make_scene(rng: random.Random) -> Scene:
    title = rng.choice(list(THEMES))
    pool = THEMES[title]
    n = rng.randint(3, 6)
    picked = rng.sample(range(len(pool)), n)
    if title in _CALENDAR:
        picked.sort()
    categories = tuple(pool[i] for i in picked)
    scale = rng.choice(_SCALES)
    values = tuple(rng.sample(range(1, scale + 1), n))
    ask = rng.choice(("highest", "lowest", "value"))
    subject = rng.choice(categories) if ask == "value" else None
    if ask == "value":
        correct = str(values[categories.index(subject)])
        wrong = _value_distractors(rng, int(correct), values)
    else:
        pick = max if ask == "highest" else min
        correct = categories[values.index(pick(values))]
        others = [c for c in categories if c != correct]
        # With three bars, the fourth option is a name from the theme not in the chart.
        spare = [c for c in pool if c not in categories]
        wrong = rng.sample(others, min(3, len(others)))
        wrong += rng.sample(spare, 3 - len(wrong))
    options = [correct, *wrong]
    rng.shuffle(options)
    return Scene(
        title,
        categories,
        values,
        scale,
        colour=rng.choice(list(INKS)),
        size=(rng.randint(236, 256), rng.randint(180, 240)),
        bar_ratio=rng.choice((0.5, 0.6, 0.7)),
        ask=ask,
        subject=subject,
        options=tuple(options),
    )


def _value_distractors(rng: random.Random, value: int, values: tuple[int, ...]) -> list[str]:
    near = {value + d for d in (-10, -5, -2, -1, 1, 2, 5, 10)}
    candidates = sorted(c for c in near | set(values) if c > 0 and c != value)
    return [str(c) for c in rng.sample(candidates, 3)]


def question(scene: Scene) -> str:
    if scene.ask == "value":
        stem = f"According to the bar chart, what is the value of {scene.subject}?"
    else:
        stem = f"According to the bar chart, which category has the {scene.ask} value?"
    return "\n".join([stem, *(f"{k}. {o}" for k, o in zip(LETTERS, scene.options, strict=True))])


def answer(scene: Scene) -> str:
    if scene.ask == "value":
        correct = str(scene.values[scene.categories.index(scene.subject)])
    else:
        pick = max if scene.ask == "highest" else min
        correct = scene.categories[scene.values.index(pick(scene.values))]
    return LETTERS[scene.options.index(correct)]


def plot_area(scene: Scene) -> tuple[int, int, int, int]:
    width, height = scene.size
    return 32, _TOP, width - 8, height - 18


def bar_boxes(scene: Scene) -> list[tuple[int, int, int, int]]:
    """Each bar's pixels as (x1, y1, x2, y2), x2 and y2 exclusive; bars stand on the x axis."""
    left, top, right, bottom = plot_area(scene)
    slot = (right - left) / len(scene.values)
    boxes = []
    for i, value in enumerate(scene.values):
        centre, half = left + (i + 0.5) * slot, slot * scene.bar_ratio / 2
        height = round(value * (bottom - top) / scene.scale)
        boxes.append((round(centre - half), bottom - height, round(centre + half), bottom))
    return boxes


def render(scene: Scene) -> bytes:
    image = canvas(scene.size, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = plot_area(scene)
    label(image, scene.size[0] / 2, 4, scene.title, _INK, "mt")
    for tick in range(0, scene.scale + 1, scene.scale // 5):
        y = bottom - tick * (bottom - top) / scene.scale
        if tick:
            draw.line((left, y, right, y), fill=_GRID)
        label(image, left - 3, y, str(tick), _INK, "rm")
    for (x1, y1, x2, y2), name, value in zip(
        bar_boxes(scene), scene.categories, scene.values, strict=True
    ):
        draw.rectangle((x1, y1, x2 - 1, y2 - 1), fill=INKS[scene.colour])
        label(image, (x1 + x2) / 2, y1 - 2, str(value), _INK, "mb")
        label(image, (x1 + x2) / 2, bottom + 3, name, _INK, "mt")
    draw.line((left, top, left, bottom, right, bottom), fill=_INK)
    return to_png(image)
