"""Any table of image/question/answer rows: a file, a local dataset folder, or a Hub dataset.

Columns are found by common names or named with ``--map field=column``; ``--map
context.KEY=column`` keeps an extra column in the sample's context.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from vlaa_data.errors import SourceError
from vlaa_data.sources.base import RawSample, RowRejected, Source, content_id, image_ref
from vlaa_data.sources.readers import read_hub, read_rows

__all__ = ["FIELDS", "GenericSource", "HubSource"]

# field -> column names tried in order when --map does not name one
FIELDS: dict[str, tuple[str, ...]] = {
    "id": ("id", "question_id", "questionId", "qid", "uid", "sample_id"),
    "question": ("question", "query", "prompt", "problem", "instruction"),
    "answer": ("answer", "gt", "ground_truth", "label", "solution", "target"),
    "image": ("image", "image_path", "img", "image_file", "images", "file_name"),
    "reward_type": ("reward_type",),
}


class GenericSource(Source):
    """Rows from a local file or dataset folder."""

    name: ClassVar[str] = "file"

    def _read(self) -> Iterator[dict[str, Any] | RowRejected]:
        assert self.path is not None
        return read_rows(self.path, split=self.options.split)

    def rows(self) -> Iterator[RawSample | RowRejected]:
        columns: dict[str, str | None] | None = None
        for row in self._read():
            if isinstance(row, RowRejected):
                yield row
                continue
            if columns is None:
                columns = self._columns(row)
            yield self._sample(row, columns)

    def _columns(self, first_row: Mapping[str, Any]) -> dict[str, str | None]:
        """Decide each field's column once, from the user's --map or the first row's keys."""
        columns: dict[str, str | None] = {}
        for field, candidates in FIELDS.items():
            if field in self.options.mapping:
                column = self.options.mapping[field]
                if column not in first_row:
                    raise SourceError(
                        f"--map {field}={column}: no column {column!r}; "
                        f"columns: {', '.join(map(str, first_row))}"
                    )
                columns[field] = column
            else:
                columns[field] = next((c for c in candidates if c in first_row), None)
        return columns

    def _sample(self, row: Mapping[str, Any], columns: Mapping[str, str | None]) -> RawSample:
        def value(field: str) -> Any:
            column = columns.get(field)
            return row.get(column) if column else None

        context = {
            key.removeprefix("context."): row.get(column)
            for key, column in self.options.mapping.items()
            if key.startswith("context.")
        }
        image = image_ref(value("image"), self.image_root)
        raw_id = value("id")
        source_id = (
            str(raw_id)
            if raw_id not in (None, "")
            else content_id(value("question"), value("answer"), image.identity() if image else None)
        )
        return RawSample(
            source_id=source_id,
            question=value("question"),
            answer=value("answer"),
            image=image,
            context=context,
            reward_type=value("reward_type") or None,
            row=row,
        )


class HubSource(GenericSource):
    """Rows streamed from a Hugging Face Hub dataset id (needs network access)."""

    name: ClassVar[str] = "hub"

    def __init__(self, dataset_id: str, options: Any) -> None:
        super().__init__(None, options)
        self.dataset_id = dataset_id

    def _read(self) -> Iterator[dict[str, Any] | RowRejected]:
        return read_hub(self.dataset_id, split=self.options.split)
