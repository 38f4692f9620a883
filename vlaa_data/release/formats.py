"""The three on-disk layouts of an exported release; each writer fills an empty folder.

    hf         data/{split}-{i:05d}-of-{n:05d}.parquet (images embedded) + README.md (configs)
    vlaa-json  VLAA-Thinking-SFT.json, VLAA-Thinking-GRPO.json + images/
    sharegpt   {name}_sft.json, {name}_rl.json, dataset_info.json + images/

Every file is a function of the release alone (rows in ``position`` order, sorted JSON keys,
no timestamps), so exporting the same release twice gives the same bytes.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from vlaa_data.chat_format import SYSTEM_PROMPT, assistant_text
from vlaa_data.errors import VlaaError
from vlaa_data.store.releases import ReleaseRow

__all__ = [
    "SPLITS",
    "VLAA_JSON_FILES",
    "WRITERS",
    "hf_configs_yaml",
    "hf_readme_header",
    "hf_splits",
    "write_hf",
    "write_sharegpt",
    "write_vlaa_json",
]

SPLITS = ("sft", "rl")
# The published files are VLAA-Thinking-SFT-126K.json and VLAA-Thinking-GRPO-25K.json; the
# counts are left out so that a release's file names do not change with its size.
VLAA_JSON_FILES = {"sft": "VLAA-Thinking-SFT.json", "rl": "VLAA-Thinking-GRPO.json"}
# What ``datasets`` itself uses for image data: small row groups keep streaming reads cheap.
_ROW_GROUP_SIZE = 100

Splits = Mapping[str, Sequence[ReleaseRow]]
Writer = Callable[[Path, str, Splits, Path, int], None]


def hf_configs_yaml(splits: Sequence[str] = SPLITS) -> dict[str, Any]:
    """The dataset card's YAML ``configs``: one config with a data-files pattern per split.

    ``datasets`` cannot load a split without rows, so an export lists only the splits it
    wrote shards for (``hf_splits(out)`` reads them back from a written export).
    """
    data_files = [{"split": split, "path": f"data/{split}-*"} for split in splits]
    return {"configs": [{"config_name": "default", "data_files": data_files}]}


def hf_splits(out: Path) -> list[str]:
    """The splits an ``hf`` export in ``out`` holds shards for, in ``SPLITS`` order."""
    return [split for split in SPLITS if any((out / "data").glob(f"{split}-*.parquet"))]


def hf_readme_header(splits: Sequence[str] = SPLITS) -> str:
    """``hf_configs_yaml`` as the ``---``-fenced YAML header of a README.md."""
    import yaml

    return "---\n" + yaml.safe_dump(hf_configs_yaml(splits), sort_keys=False) + "---\n"


def write_hf(out: Path, name: str, splits: Splits, root: Path, shard_rows: int) -> None:
    """Parquet shards of at most ``shard_rows`` rows, images embedded, in columns TRL reads as
    they are (see ``_hf_record``), and a README.md holding only the ``configs`` YAML. A split
    without rows gets no shard and no entry in ``configs``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (out / "data").mkdir(parents=True)
    schema = _hf_features().arrow_schema
    for split, rows in splits.items():
        shards = -(-len(rows) // shard_rows)
        for index in range(shards):
            chunk = rows[index * shard_rows : (index + 1) * shard_rows]
            table = pa.Table.from_pylist([_hf_record(row, root) for row in chunk], schema=schema)
            path = out / "data" / f"{split}-{index:05d}-of-{shards:05d}.parquet"
            pq.write_table(table, path, row_group_size=_ROW_GROUP_SIZE)
    (out / "README.md").write_text(hf_readme_header(hf_splits(out)), encoding="utf-8")


def write_vlaa_json(out: Path, name: str, splits: Splits, root: Path, shard_rows: int) -> None:
    """The published VLAA-Thinking schema; ``image`` is relative to ``out`` (the ``--images``
    root when re-imported with ``collect vlaa-thinking FILE --images OUT``)."""
    images = _copy_images(out, splits, root)
    for split, rows in splits.items():
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
    """LLaMA-Factory's sharegpt layout: ``messages`` with ``<image>`` in the user turn."""
    images = _copy_images(out, splits, root)
    info = {}
    for split, rows in splits.items():
        file_name = f"{name}_{split}.json"
        records = [
            {
                "messages": [
                    {"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": f"<image>{row.question}"},
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
    """One schema for both splits: ``datasets`` gives all splits of a config the same features,
    and ``load_dataset(out)`` must see ``sft`` and ``rl`` in one config."""
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
    prompt = [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        # the image part's ``text`` is null: one struct type holds both kinds of part
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": row.question}]},
    ]
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


def _write_json(path: Path, value: Any) -> None:
    text = json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True)
    path.write_text(text + "\n", encoding="utf-8")
