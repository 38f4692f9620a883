"""A workspace with verified samples from two sources, and a release made from it.

The samples come in through the real import of VLAA-Thinking files (which records done
caption, distill and rewrite results), get verdicts from the real rule verifier, aha scores
from the aha filter, and are split by ``split``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import png_bytes
from tests.test_collect import run_collect
from vlaa_data.steps.verify import VerifyOptions, run_verify
from vlaa_data.workspace import Workspace

# (id, gold, distilled answer, caption); "wait", "check", "hmm", "alternatively" make aha
# moments. arxiv/a1 (no aha) has the same image as clevr/c2 (aha), so the split's leakage
# guard has something to guard.
CLEVR = [
    ("c1", "3", "<think>\nThree cubes.\n</think>\nAnswer: 3", "Three cubes on a floor."),
    ("c2", "4", "<think>\nFour. Wait, count again: four.\n</think>\nAnswer: 4", "Four spheres."),
    ("c3", "2", "<think>\nTwo.\n</think>\nAnswer: 5", "Two cylinders."),  # incorrect
    ("c4", "5", "<think>\nFive, let me check.\n</think>\nAnswer: 5", "Five objects."),
    ("c5", "1", "<think>\nOne.\n</think>\nAnswer: 1", "One cube."),
    ("c6", "6", "<think>\nSix. Hmm, yes six.\n</think>\nAnswer: 6", "Six objects."),
]
ARXIV = [
    ("a1", "B", "<think>\nThe curve rises.\n</think>\nThe answer is B", ""),
    ("a2", "C", "<think>\nAlternatively, read the axis.\n</think>\n(C)", ""),
    ("a3", "A", "<think>\nThe legend says so.\n</think>\nAnswer: A", ""),
    ("a4", "D", "<think>\nThe peak is at D.\n</think>\nAnswer: B", ""),  # incorrect
]


def _records(rows: list[tuple[str, str, str, str]], folder: str) -> list[dict]:
    return [
        {
            "id": ident,
            "image": f"{folder}/{ident}.png",
            "question": f"Question {ident}: how many objects, or which option?",
            "gt": gold,
            "ds_answer": answer,
            "caption": caption,
            "meta": {},
        }
        for ident, gold, answer, caption in rows
    ]


def build_verified_workspace(workspace: Path, tmp_path: Path) -> Path:
    images = tmp_path / "source_images"
    for folder, rows in (("clevr", CLEVR), ("arxiv", ARXIV)):
        (images / folder).mkdir(parents=True, exist_ok=True)
        for i, (ident, *_rest) in enumerate(rows):
            color = (10 * i, 80 if folder == "clevr" and ident != "a1" else 160, 40)
            if ident == "a1":
                color = (10, 80, 40)  # clevr/c2's image
            (images / folder / f"{ident}.png").write_bytes(png_bytes(color, size=(32, 24)))
        path = tmp_path / f"{folder}.json"
        path.write_text(json.dumps(_records(rows, folder)))
        run_collect(workspace, "vlaa-thinking", str(path), name=folder, images=images)
    with Workspace.open(workspace, write=True) as ws:
        run_verify(ws, VerifyOptions(rules_only=True, math_workers=1))
    return workspace


@pytest.fixture
def verified_workspace(workspace: Path, tmp_path: Path) -> Path:
    """Ten samples (clevr: 6 digit, arxiv: 4 choice), eight verified correct."""
    return build_verified_workspace(workspace, tmp_path)


def build_release(workspace: Path, name: str = "v1", **split_options) -> Path:
    """Aha scores with the paper's keywords, then ``split`` with ``split_options``."""
    from vlaa_data.filters.aha import AhaOptions, run_aha
    from vlaa_data.steps.split import SplitOptions, run_split

    with Workspace.open(workspace, write=True) as ws:
        run_aha(ws, AhaOptions())
        run_split(ws, SplitOptions(name=name, **split_options))
    return workspace


@pytest.fixture
def released_workspace(verified_workspace: Path) -> Path:
    """``verified_workspace`` with release ``v1`` made by the paper's rule.

    SFT: clevr/c1, clevr/c5, arxiv/a3 (arxiv/a1 is dropped: its image is clevr/c2's, in RL).
    RL: clevr/c2, clevr/c4, clevr/c6, arxiv/a2. Excluded as not verified: clevr/c3, arxiv/a4.
    """
    return build_release(verified_workspace)
