"""CLEVR-Math (dali-does/clevr-math): rows ``{template, id, question, image, label}``.

``label`` is the integer answer of a counting question. The scene description (the objects
of the image) comes from a ``scene``/``objects`` field on the row, else from CLEVR scene files
(``*scenes*.json``: ``{"scenes": [{"image_filename", "objects": [...]}]}``) next to PATH,
joined by the image's file name.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any

from vlaa_data.sources.base import RawSample, RowRejected, register_source
from vlaa_data.sources.conversations import image_name
from vlaa_data.sources.readers import read_rows
from vlaa_data.sources.row_adapter import RowAdapter

__all__ = ["ClevrMath"]

_OBJECT_KEYS = ("color", "size", "material", "shape")


@register_source
class ClevrMath(RowAdapter):
    name = "clevr-math"

    def sample(self, row: dict[str, Any]) -> RawSample:
        image = self.image(row)
        question = self.value(row, "question")
        label = self.value(row, "answer", "label")
        context: dict[str, Any] = {"template": row.get("template")}
        objects = self._objects(row)
        if objects is not None:
            context["scene"] = [
                {key: obj.get(key) for key in _OBJECT_KEYS}
                for obj in objects
                if isinstance(obj, Mapping)
            ]
        answer = None if label is None else str(label)
        source_id = self.source_id(row, image, question)
        return RawSample(source_id, question, answer, image, context, "digit", row=row)

    def _objects(self, row: Mapping[str, Any]) -> list[Any] | None:
        scene = row.get("scene", row.get("objects"))
        if isinstance(scene, Mapping):
            scene = scene.get("objects")
        if isinstance(scene, list):
            return scene
        # The HF parquet keeps the image bytes but not always its file name; the id is its stem.
        own = self.own_id(row)
        name = image_name(self.value(row, "image")) or (own and f"{own}.png")
        return self._scenes.get(name) if name else None

    @cached_property
    def _scenes(self) -> dict[str, list[Any]]:
        """Objects by image file name, from every ``*scenes*.json`` beside PATH."""
        assert self.path is not None
        folder = self.path if self.path.is_dir() else self.path.parent
        scenes: dict[str, list[Any]] = {}
        for file in sorted(folder.glob("*scenes*.json")):
            for scene in read_rows(file):
                if not isinstance(scene, RowRejected) and isinstance(scene.get("objects"), list):
                    scenes[str(scene.get("image_filename"))] = scene["objects"]
        return scenes
