"""The three on-disk layouts of an exported release; each writer fills an empty folder.

    hf         data/{split}-{i:05d}-of-{n:05d}-{digest}.parquet (images embedded), prompt.json
               (the system prompt and task instructions); the dataset card (README.md, whose
               ``configs`` list those files) is ``export``'s
    vlaa-json  VLAA-Thinking-SFT.json, VLAA-Thinking-GRPO.json (+ VLAA-Thinking-Test.json) + images/
    sharegpt   {name}_{split}.json for each split with rows, dataset_info.json + images/

Every file is a function of the release alone (rows in ``position`` order, sorted JSON keys,
no timestamps), so exporting the same release twice gives the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from vlaa_data.chat_format import (
    PROMPT_FILE,
    SYSTEM_PROMPT,
    assistant_text,
    prompt_messages,
    prompt_record,
    user_text,
)
from vlaa_data.errors import VlaaError
from vlaa_data.store.releases import SPLITS, ReleaseRow

__all__ = [
    "SPLITS",
    "VLAA_JSON_FILES",
    "WRITERS",
    "hf_configs_yaml",
    "hf_shards",
    "hf_splits",
    "write_hf",
    "write_sharegpt",
    "write_vlaa_json",
]

# The published files are VLAA-Thinking-SFT-126K.json and VLAA-Thinking-GRPO-25K.json; the
# counts are left out so that a release's file names do not change with its size. The test
# part is ours: its file is written only when it has rows.
VLAA_JSON_FILES = {
    "sft": "VLAA-Thinking-SFT.json",
    "rl": "VLAA-Thinking-GRPO.json",
    "test": "VLAA-Thinking-Test.json",
}
_PUBLISHED = ("sft", "rl")
# What ``datasets`` itself uses for image data: small row groups keep streaming reads cheap.
_ROW_GROUP_SIZE = 100

Splits = Mapping[str, Sequence[ReleaseRow]]
Writer = Callable[[Path, str, Splits, Path, int], None]


def hf_configs_yaml(out: Path) -> dict[str, Any]:
    """The dataset card's YAML ``configs`` for the ``hf`` export in ``out``: one config whose
    ``data_files`` name each split's shards.

    Files, not a ``data/{split}-*`` pattern: ``load_dataset(out)`` keys its cache on the
    folder's name and the configs, and the shards' names carry their content's digest, so a
    new export in the same folder is read afresh. ``datasets`` cannot load a split without
    rows, so a split without shards is left out.
    """
    data_files = [
        {"split": split, "path": [f"data/{shard.name}" for shard in hf_shards(out, split)]}
        for split in hf_splits(out)
    ]
    return {"configs": [{"config_name": "default", "data_files": data_files}]}


def hf_shards(out: Path, split: str) -> list[Path]:
    """The parquet shards of ``split`` in the ``hf`` export ``out``, in export order."""
    return sorted((Path(out) / "data").glob(f"{split}-*.parquet"))


def hf_splits(out: Path) -> list[str]:
    """The splits an ``hf`` export in ``out`` holds shards for, in ``SPLITS`` order."""
    return [split for split in SPLITS if hf_shards(out, split)]


def write_hf(out: Path, name: str, splits: Splits, root: Path, shard_rows: int) -> None:
    """Parquet shards of at most ``shard_rows`` rows, images embedded, in columns TRL reads as
    they are (see ``_hf_record``), and ``prompt.json``: how the prompts were built. A split
    without rows gets no shard.

    Each shard's name ends in the first 16 hex digits of its sha256: a re-export that changes
    a shard changes its name, so neither ``datasets``' cache nor a Hub repo holding the earlier
    shards can mix them with the new ones.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    (out / "data").mkdir(parents=True)
    schema = _hf_features().arrow_schema
    for split, rows in splits.items():
        shards = -(-len(rows) // shard_rows)
        for index in range(shards):
            chunk = rows[index * shard_rows : (index + 1) * shard_rows]
            table = pa.Table.from_pylist([_hf_record(row, root) for row in chunk], schema=schema)
            written = out / "data" / f".{split}-{index:05d}.parquet"
            pq.write_table(table, written, row_group_size=_ROW_GROUP_SIZE)
            stem = f"{split}-{index:05d}-of-{shards:05d}-{_sha256(written)[:16]}"
            written.rename(out / "data" / f"{stem}.parquet")
    _write_json(out / PROMPT_FILE, prompt_record())


def write_vlaa_json(out: Path, name: str, splits: Splits, root: Path, shard_rows: int) -> None:
    """The published VLAA-Thinking schema; ``image`` is relative to ``out`` (the ``--images``
    root when re-imported with ``collect vlaa-thinking FILE --images OUT``)."""
    images = _copy_images(out, splits, root)
    for split, rows in splits.items():
        if not rows and split not in _PUBLISHED:
            continue
        records = [
            {
                "id": row.sample_id,
                "image": images[row.image_sha],
                "question": row.question,
                "gt": row.gold,
                "ds_answer": f"<think>\n{row.reasoning.strip()}\n</think>\n\n"
                f"{row.response.strip()}",
                "caption": row.caption or "",
                "meta": {
                    "source": row.source,
                    "reward_type": row.reward_type,
                    "verdict": row.verdict,
                    "verify_method": row.verify_method,
                    "aha_count": row.aha_count,
                    "ppl": row.ppl,
                },
            }
            for row in rows
        ]
        _write_json(out / VLAA_JSON_FILES[split], records)


def write_sharegpt(out: Path, name: str, splits: Splits, root: Path, shard_rows: int) -> None:
    """LLaMA-Factory's sharegpt layout: ``messages`` with ``<image>`` in the user turn. A split
    without rows gets no file and no ``dataset_info.json`` entry (LLaMA-Factory cannot train on
    an empty dataset)."""
    images = _copy_images(out, splits, root)
    info = {}
    for split, rows in splits.items():
        if not rows:
            continue
        file_name = f"{name}_{split}.json"
        records = [
            {
                "messages": [
                    {"role": "system", "content": SYSTEM_PROMPT},
                    {
                        "role": "user",
                        "content": f"<image>{user_text(row.question, row.reward_type)}",
                    },
                    {"role": "assistant", "content": assistant_text(row.reasoning, row.response)},
                ],
                "images": [images[row.image_sha]],
            }
            for row in rows
        ]
        _write_json(out / file_name, records)
        info[f"{name}_{split}"] = {
            "file_name": file_name,
            "formatting": "sharegpt",
            "columns": {"messages": "messages", "images": "images"},
            "tags": {
                "role_tag": "role",
                "content_tag": "content",
                "user_tag": "user",
                "assistant_tag": "assistant",
                "system_tag": "system",
            },
        }
    _write_json(out / "dataset_info.json", info)


WRITERS: dict[str, Writer] = {
    "hf": write_hf,
    "vlaa-json": write_vlaa_json,
    "sharegpt": write_sharegpt,
}


def _hf_features() -> Any:
    """One schema for every split: ``datasets`` gives all splits of a config the same features,
    and ``load_dataset(out)`` must see ``sft``, ``rl`` and ``test`` in one config."""
    from datasets import Features, Image, Value

    text = Value("string")
    messages = [{"role": text, "content": [{"type": text, "text": text}]}]
    return Features(
        {
            "id": text,
            "source": text,
            "messages": messages,
            "prompt": messages,
            "image": Image(),
            "solution": text,
            "reward_type": text,
        }
    )


def _hf_record(row: ReleaseRow, root: Path) -> dict[str, Any]:
    """TRL reads ``messages`` + ``image`` for SFT and ``prompt`` + ``image`` for GRPO (the other
    columns reach the reward functions as keyword arguments)."""
    # the image part's ``text`` is null: one struct type holds both kinds of part
    prompt = prompt_messages(row.question, row.reward_type)
    answer = assistant_text(row.reasoning, row.response)
    return {
        "id": row.sample_id,
        "source": row.source,
        "messages": [*prompt, {"role": "assistant", "content": [{"type": "text", "text": answer}]}],
        "prompt": prompt,
        "image": _image_cell(row, root),
        "solution": row.gold,
        "reward_type": row.reward_type,
    }


def _image_cell(row: ReleaseRow, root: Path) -> dict[str, Any]:
    """The ``datasets`` Image encoding: the file's own bytes, named by content."""
    return {"bytes": _image_file(row, root).read_bytes(), "path": _image_name(row)}


def _copy_images(out: Path, splits: Splits, root: Path) -> dict[str, str]:
    """Copy each image once into ``out/images/``; image sha -> path relative to ``out``."""
    (out / "images").mkdir(parents=True)
    copied: dict[str, str] = {}
    for rows in splits.values():
        for row in rows:
            if row.image_sha not in copied:
                relative = f"images/{_image_name(row)}"
                shutil.copyfile(_image_file(row, root), out / relative)
                copied[row.image_sha] = relative
    return copied


def _image_name(row: ReleaseRow) -> str:
    return row.image_sha + Path(row.image_path).suffix.lower()


def _image_file(row: ReleaseRow, root: Path) -> Path:
    path = root / row.image_path
    if not path.is_file():
        raise VlaaError(f"image {row.image_path} of sample {row.sample_id} is missing from {root}")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _write_json(path: Path, value: Any) -> None:
    text = json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True)
    path.write_text(text + "\n", encoding="utf-8")
