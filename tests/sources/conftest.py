"""Fixtures for the adapter tests: a writer of small dataset files and real tiny images."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image


class DatasetWriter:
    """Writes dataset files and images under one folder; every method returns what it wrote."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def image_bytes(self, colour: tuple[int, int, int], fmt: str = "PNG") -> bytes:
        buffer = io.BytesIO()
        Image.new("RGB", (4, 4), colour).save(buffer, format=fmt)
        return buffer.getvalue()

    def image(self, relpath: str, colour: tuple[int, int, int], fmt: str = "PNG") -> bytes:
        data = self.image_bytes(colour, fmt)
        self._target(relpath).write_bytes(data)
        return data

    def json(self, relpath: str, data: Any) -> Path:
        path = self._target(relpath)
        path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        return path

    def jsonl(self, relpath: str, rows: list[Any]) -> Path:
        path = self._target(relpath)
        lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    def parquet(self, relpath: str, rows: list[dict[str, Any]]) -> Path:
        path = self._target(relpath)
        pq.write_table(pa.Table.from_pylist(rows), path)
        return path

    def _target(self, relpath: str) -> Path:
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


@pytest.fixture
def ds(tmp_path: Path) -> DatasetWriter:
    return DatasetWriter(tmp_path)
