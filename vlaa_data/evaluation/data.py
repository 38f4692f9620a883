"""Reading the rows to evaluate from an ``hf`` export (``vlaa-data export NAME --format hf``).

Shards are read with ``load_dataset("parquet", data_files=...)``, never ``load_dataset(DIR)``,
whose cache is keyed by the folder's name: two exports in folders of the same name would read
each other's rows. Images are written once each, named by content, into a folder the caller
owns, so that every backend reads them as it reads workspace images and rows hold no pixels.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from vlaa_data.errors import VlaaError
from vlaa_data.release.formats import SPLITS, hf_shards, hf_splits

__all__ = ["EvalRow", "default_split", "load_split", "split_shards"]

_COLUMNS = ("id", "source", "prompt", "image", "solution", "reward_type")


@dataclass(frozen=True)
class EvalRow:
    """One sample to evaluate: its prompt (system + user turn) and what scores the answer."""

    id: str
    source: str
    reward_type: str
    question: str
    gold: str
    prompt: list[dict[str, Any]]  # the export's messages; the image part is ``{"type": "image"}``
    image_sha: str
    image_path: Path
    image_size: tuple[int, int]


def load_split(
    folder: Path, split: str, image_dir: Path, limit: int | None = None
) -> list[EvalRow]:
    """The first ``limit`` rows (all: None) of ``split`` in export order, images in ``image_dir``.

    A folder that is not an ``hf`` export, or lacks the split, raises a one-line VlaaError.
    """
    shards = split_shards(folder, split)
    from datasets import Image as ImageFeature
    from datasets import load_dataset
    from datasets.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    # Reading a few parquet shards needs no progress bar of its own amid the eval's.
    quiet = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        dataset = load_dataset("parquet", data_files={split: shards}, split=split)
    finally:
        if not quiet:
            enable_progress_bars()
    missing = [name for name in _COLUMNS if name not in dataset.column_names]
    if missing:
        raise VlaaError(f"{folder} lacks the column(s) {', '.join(missing)} of an hf export")
    if limit is not None:
        dataset = dataset.select(range(min(limit, dataset.num_rows)))
    # Bytes as stored: decoding to PIL here would only be undone to write the file.
    dataset = dataset.cast_column("image", ImageFeature(decode=False))
    image_dir.mkdir(parents=True, exist_ok=True)
    return [_row(record, image_dir) for record in dataset]


def default_split(folder: Path) -> tuple[str, str | None]:
    """The split ``eval`` scores without ``--split``: the held-out ``test`` part, else ``rl``
    with a note saying that this is the split GRPO trains on."""
    if "test" in _present(folder):
        return "test", None
    return "rl", (
        f"{folder} has no test split: evaluating on rl, the split GRPO trains on (a release "
        "made with `vlaa-data split NAME --test-size N` holds out a test part)"
    )


def split_shards(folder: Path, split: str) -> list[str]:
    """The parquet shards of ``split`` in ``folder``, in export order (their names sort so)."""
    if split not in SPLITS:
        raise VlaaError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    present = _present(folder)
    if split not in present:
        raise VlaaError(f"{folder} has no {split} split (it has: {', '.join(present)})")
    return [str(path) for path in hf_shards(folder, split)]


def _present(folder: Path) -> list[str]:
    """The splits of the hf export ``folder``; a one-line error where it is not one."""
    if not folder.is_dir():
        raise VlaaError(f"no such folder: {folder}")
    present = hf_splits(folder)
    if not present:
        raise VlaaError(
            f"{folder} is not an hf export (no data/*.parquet); "
            "write one with: vlaa-data export NAME --format hf --out DIR"
        )
    return present


def _row(record: dict[str, Any], image_dir: Path) -> EvalRow:
    data = (record["image"] or {}).get("bytes")
    if not data:
        raise VlaaError(f"sample {record['id']} has no embedded image")
    sha = hashlib.sha256(data).hexdigest()
    with Image.open(io.BytesIO(data)) as image:
        size, suffix = image.size, (image.format or "png").lower()
    path = image_dir / f"{sha}.{suffix}"
    if not path.exists():
        path.write_bytes(data)
    return EvalRow(
        id=record["id"],
        source=record["source"],
        reward_type=record["reward_type"],
        question=_user_text(record["prompt"]),
        gold=record["solution"],
        prompt=record["prompt"],
        image_sha=sha,
        image_path=path,
        image_size=size,
    )


def _user_text(prompt: list[dict[str, Any]]) -> str:
    user = [m for m in prompt if m.get("role") == "user"]
    parts = user[-1]["content"] if user else []
    return "\n".join(p["text"] for p in parts if p.get("type") == "text" and p.get("text"))
