"""The row loop the dataset adapters share.

``RowAdapter`` reads PATH, maps each row with the subclass's ``sample`` and turns a row whose
shape rules out mapping (``MalformedRow``, or an image value of an unusable type) into a
``RowRejected``.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from vlaa_data.errors import SourceError
from vlaa_data.images import ImageRejected
from vlaa_data.sources.base import (
    ImageRef,
    RawSample,
    RowRejected,
    Source,
    content_id,
    image_ref,
)
from vlaa_data.sources.readers import read_rows

__all__ = ["MalformedRow", "RowAdapter"]


class MalformedRow(Exception):
    """A row whose shape this adapter cannot map at all; its message says why, in one line."""


class RowAdapter(Source):
    """A source whose rows map one by one; subclasses implement ``sample``."""

    #: The column holding the dataset's own id (``--map id=...`` overrides it).
    id_column: ClassVar[str] = "id"

    def rows(self) -> Iterator[RawSample | RowRejected]:
        if self.path is None:
            raise SourceError(f"{self.name}: needs the path of the dataset file")
        for index, row in enumerate(read_rows(self.path, split=self.options.split)):
            if isinstance(row, RowRejected):
                yield row
                continue
            try:
                yield self.sample(row)
            except MalformedRow as exc:
                yield RowRejected(self.row_key(row, index), "malformed_row", str(exc), row)
            except ImageRejected as exc:
                yield RowRejected(self.row_key(row, index), exc.reason, exc.detail, row)

    @abstractmethod
    def sample(self, row: dict[str, Any]) -> RawSample:
        """Map one row; raise ``MalformedRow`` when its shape rules out mapping it."""

    def value(self, row: Mapping[str, Any], field: str, default: str | None = None) -> Any:
        """The row's value for ``field``, read from the column ``--map`` names, if any."""
        return row.get(self.column(field, default or field))

    def image(self, row: Mapping[str, Any]) -> ImageRef | None:
        return image_ref(self.value(row, "image"), self.image_root)

    def own_id(self, row: Mapping[str, Any]) -> str | None:
        own = self.value(row, "id", self.id_column)
        return None if own is None or own == "" else str(own)

    def source_id(self, row: Mapping[str, Any], image: ImageRef | None, question: Any) -> str:
        """The dataset's own id, else a stable hash of the image (path or bytes) and question."""
        own = self.own_id(row)
        if own is not None:
            return own
        return content_id(image.identity() if image else None, question)

    def row_key(self, row: Mapping[str, Any], index: int) -> str:
        return self.own_id(row) or f"row-{index}"
