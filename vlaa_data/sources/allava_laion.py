"""ALLaVA-LAION (FreedomIntelligence/ALLaVA-4V): PATH is ``ALLaVA-Instruct-LAION-4V.json``,
records ``{id, image: "allava_laion/images/100277305.jpeg", conversations: [human, gpt]}``.

The existing GPT-4V caption is the row's ``caption`` field, else the gpt turn of the record
with the same ``image`` in the sibling ``ALLaVA-Caption-LAION-4V.json``. The image paths start
with the folder the JSON files sit in (``allava_laion/``); without ``--images`` they are
resolved from that folder's parent.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import PurePosixPath
from typing import Any

from vlaa_data.sources.base import RawSample, RowRejected, image_ref, register_source
from vlaa_data.sources.conversations import first_exchange
from vlaa_data.sources.readers import read_rows
from vlaa_data.sources.row_adapter import MalformedRow, RowAdapter

__all__ = ["AllavaLaion"]

_CAPTION_FILE = "ALLaVA-Caption-LAION-4V.json"


@register_source
class AllavaLaion(RowAdapter):
    name = "allava-laion"

    def sample(self, row: dict[str, Any]) -> RawSample:
        question, answer = first_exchange(row, self.column("conversations", "conversations"))
        value = self.value(row, "image")
        root = self.image_root
        named = isinstance(value, str)
        if named and self.options.images is None and PurePosixPath(value).parts[:1] == (root.name,):
            root = root.parent
        image = image_ref(value, root)
        caption = row.get("caption") or (self._captions.get(value) if named else None)
        context = {"caption": caption} if caption else {}
        source_id = self.source_id(row, image, question)
        return RawSample(source_id, question, answer, image, context, "open", row=row)

    @cached_property
    def _captions(self) -> dict[str, Any]:
        """Caption by image path, from the caption file next to the instruct file."""
        assert self.path is not None
        names = (self.path.name.replace("Instruct", "Caption"), _CAPTION_FILE)
        files = [self.path.with_name(n) for n in names if n != self.path.name]
        file = next((f for f in files if f.is_file()), None)
        captions: dict[str, Any] = {}
        for record in read_rows(file) if file else ():
            if isinstance(record, RowRejected) or not isinstance(record.get("image"), str):
                continue
            try:
                captions[record["image"]] = first_exchange(record)[1]
            except MalformedRow:
                continue
        return captions
