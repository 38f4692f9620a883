"""Read rows from files: ``.jsonl``, ``.json``, ``.parquet``, ``.csv``, and local Hugging Face
dataset folders (``save_to_disk`` output or a parquet repository layout), or a Hub id.

Rows come out as plain dicts. Text that is not valid UTF-8 is kept with surrogate escapes so
the collect step can reject that one row (``invalid_utf8``) instead of the whole file.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vlaa_data.errors import SourceError
from vlaa_data.sources.base import RowRejected

__all__ = ["FILE_SUFFIXES", "read_hub", "read_rows"]

FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
Row = dict[str, Any]


def read_rows(path: Path, *, split: str | None = None) -> Iterator[Row | RowRejected]:
    """Every row of a local file or dataset folder, in order."""
    if not path.exists():
        raise SourceError(f"{path}: no such file or directory")
    if path.is_dir():
        yield from _read_folder(path, split)
        return
    suffix = path.suffix.lower()
    readers = {".jsonl": _read_jsonl, ".json": _read_json, ".parquet": _read_parquet}
    if suffix == ".csv":
        yield from _read_csv(path)
    elif suffix in readers:
        yield from readers[suffix](path)
    else:
        raise SourceError(
            f"{path}: unsupported file type {suffix or '(none)'}; use one of "
            f"{', '.join(FILE_SUFFIXES)} or a dataset folder"
        )


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", "surrogateescape")
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def _read_jsonl(path: Path) -> Iterator[Row | RowRejected]:
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    with handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.decode("utf-8", "surrogateescape").strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield RowRejected(
                    f"line-{number}", "malformed_row", f"line {number}: {exc.msg}", line[:200]
                )
                continue
            if not isinstance(row, dict):
                yield RowRejected(
                    f"line-{number}",
                    "malformed_row",
                    f"line {number}: expected an object, got {type(row).__name__}",
                )
                continue
            yield row


def _read_json(path: Path) -> Iterator[Row | RowRejected]:
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise SourceError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}") from exc
    records = records_of(data)
    if records is None:
        raise SourceError(f"{path}: expected a JSON list of objects (or an object holding one)")
    for index, row in enumerate(records):
        if isinstance(row, dict):
            yield row
        else:
            yield RowRejected(
                f"item-{index}",
                "malformed_row",
                f"item {index}: expected an object, got {type(row).__name__}",
            )


def records_of(data: Any) -> list[Any] | None:
    """The list of records in a JSON document: the document itself, or the first list-valued
    key of an object (``{"data": [...]}`` as DocVQA writes it)."""
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        for value in data.values():
            if isinstance(value, list) and (not value or isinstance(value[0], dict)):
                return value
    return None


def _read_csv(path: Path) -> Iterator[Row]:
    try:
        handle = path.open(encoding="utf-8", errors="surrogateescape", newline="")
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    with handle:
        yield from csv.DictReader(handle)


def _read_parquet(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise SourceError(f"{path}: not a readable parquet file: {exc}") from exc
    for batch in parquet.iter_batches(batch_size=256):
        yield from batch.to_pylist()


def _read_folder(path: Path, split: str | None) -> Iterator[Row | RowRejected]:
    if (path / "state.json").exists() or (path / "dataset_dict.json").exists():
        yield from _read_saved_dataset(path, split)
        return
    files = sorted(p for p in path.rglob("*.parquet") if not p.name.startswith("."))
    if not files:
        files = sorted(p for p in path.rglob("*.jsonl"))
    if not files:
        raise SourceError(f"{path}: not a dataset folder (no save_to_disk files, no parquet)")
    wanted = split or ("train" if any("train" in _split_of(f, path) for f in files) else None)
    if wanted:
        files = [f for f in files if wanted in _split_of(f, path)]
        if not files:
            raise SourceError(f"{path}: no files for split {wanted!r}")
    for file in files:
        yield from read_rows(file)


def _split_of(file: Path, root: Path) -> str:
    """The part of a repo path that names the split: 'data/train-0000.parquet' -> 'train-0000'."""
    return "/".join(file.relative_to(root).with_suffix("").parts)


def _read_saved_dataset(path: Path, split: str | None) -> Iterator[Row]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:
        raise SourceError(f"{path}: cannot load dataset: {exc}") from exc
    if isinstance(loaded, datasets.DatasetDict):
        name = split or ("train" if "train" in loaded else next(iter(loaded), None))
        if name not in loaded:
            raise SourceError(f"{path}: no split {name!r}; splits: {', '.join(loaded)}")
        loaded = loaded[name]
    yield from _undecoded(loaded)


def _undecoded(dataset: Any) -> Iterator[Row]:
    """Iterate a datasets object with Image columns left as {"bytes", "path"} (no decode)."""
    import datasets

    for name, feature in (dataset.features or {}).items():
        if isinstance(feature, datasets.Image):
            dataset = dataset.cast_column(name, datasets.Image(decode=False))
    yield from dataset


def read_hub(dataset_id: str, *, split: str | None) -> Iterator[Row]:
    """Stream a Hub dataset through ``datasets.load_dataset`` (needs network access)."""
    import datasets

    try:
        stream = datasets.load_dataset(dataset_id, split=split or "train", streaming=True)
    except Exception as exc:
        raise SourceError(f"{dataset_id}: cannot load from the Hub: {exc}") from exc
    yield from _undecoded(stream)
