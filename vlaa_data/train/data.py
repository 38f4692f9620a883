"""Reading an ``hf`` export (``vlaa-data export NAME --format hf``) as a trainer's dataset.

The export's parquet files are loaded by name with ``load_dataset("parquet", data_files=...)``:
``load_dataset(folder)`` would cache by the folder's name and could hand back an older export
made in the same place.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from vlaa_data.errors import VlaaError
from vlaa_data.hf import require
from vlaa_data.release.formats import hf_splits

__all__ = ["data_digest", "grpo_dataset", "load_split", "sft_dataset", "split_files"]

_COLUMNS = {"sft": ("messages", "image"), "rl": ("prompt", "image", "solution", "reward_type")}


def split_files(folder: Path, split: str) -> list[Path]:
    """The parquet shards of ``split`` in export ``folder``; a one-line error when the folder is
    not an ``hf`` export or holds no such split."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VlaaError(f"no such folder: {folder}")
    if not hf_splits(folder):
        raise VlaaError(
            f"{folder} is not an hf export (no data/{{sft,rl}}-*.parquet); "
            "make one with `vlaa-data export NAME --format hf --out DIR`"
        )
    files = sorted((folder / "data").glob(f"{split}-*.parquet"))
    if not files:
        held = ", ".join(hf_splits(folder))
        raise VlaaError(f"{folder} has no {split!r} split (it holds: {held})")
    return files


def load_split(folder: Path, split: str) -> Any:
    """The ``split`` of export ``folder`` as a ``datasets.Dataset`` (images decoded on access)."""
    datasets = require("datasets", "train", "training")
    files = split_files(folder, split)
    dataset = datasets.load_dataset(
        "parquet", data_files={split: [str(f) for f in files]}, split=split
    )
    missing = [c for c in _COLUMNS[split] if c not in dataset.column_names]
    if missing:
        raise VlaaError(f"{folder}: the {split} split lacks column(s) {', '.join(missing)}")
    return dataset


def sft_dataset(dataset: Any) -> Any:
    """TRL's prompt-completion format: ``prompt`` = the turns before the last, ``completion`` =
    the last (the distilled answer), and ``image``. With ``completion_only_loss`` TRL's vision
    collator then puts the loss on the completion only; without it, on the whole conversation.
    """
    return dataset.map(
        lambda messages: {"prompt": messages[:-1], "completion": messages[-1:]},
        input_columns=["messages"],
        remove_columns=[c for c in dataset.column_names if c != "image"],
        desc="prompt and completion",
    )


def grpo_dataset(dataset: Any) -> Any:
    """The RL rows without ``messages`` (it holds the distilled answer, which the policy must
    not see); ``prompt`` and ``image`` feed generation, the rest reaches the rewards."""
    return dataset.remove_columns([c for c in ("messages",) if c in dataset.column_names])


def data_digest(folder: Path) -> str:
    """sha256 over the export's parquet files (names and bytes): which data a run trained on."""
    digest = hashlib.sha256()
    for path in sorted((Path(folder) / "data").glob("*.parquet")):
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
