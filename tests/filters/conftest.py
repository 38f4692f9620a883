"""Workspaces with texts for the filters to score, made through the real VLAA-Thinking import
(which records done caption, distill and rewrite results, so ``scored_texts`` returns them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import png_bytes
from tests.test_collect import run_collect

_REASONING = [
    "Count the cubes.",
    "There are three red cubes and two spheres. Wait, check again: three cubes.",
    "The chart shows sales by year. The highest bar is 2019, then 2018. Hmm, compare the two "
    "bars again; 2019 is taller by a small margin, so the year with the highest value is 2019.",
    "Read the options one by one.",
    "The triangle has base 6 and height 8, so the area is half of 48, which is 24.",
    "Two circles.",
]
_ANSWERS = ["Answer: 1", "Answer: 3", "The answer is 2019.", "B", "Answer: 24 square units", "2"]


def import_texts(workspace: Path, folder: Path, count: int = 6) -> list[str]:
    """Import ``count`` samples (at most 6) with texts and images of different sizes into
    ``workspace``; returns their sample ids, sorted. Images lie under ``workspace/images``."""
    images = folder / "source_images"
    images.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(count):
        size = (20 + 30 * i, 16 + 20 * (i % 3))
        (images / f"t{i}.png").write_bytes(png_bytes((40 * i, 90, 200 - 30 * i), size=size))
        records.append(
            {
                "id": f"clevr_math-t{i}",
                "image": f"t{i}.png",
                "question": f"Question {i}: how many objects are in the image?",
                "gt": str(i),
                "ds_answer": f"<think>\n{_REASONING[i]}\n</think>\n{_ANSWERS[i]}",
                "caption": "",
                "meta": {},
            }
        )
    path = folder / "texts.json"
    path.write_text(json.dumps(records))
    run_collect(workspace, "vlaa-thinking", str(path), name="texts", images=images)
    return sorted(f"texts/clevr_math-t{i}" for i in range(count))


@pytest.fixture
def text_workspace(workspace: Path, tmp_path: Path) -> Path:
    """A workspace with six samples whose current texts (and images) differ in length."""
    import_texts(workspace, tmp_path)
    return workspace
