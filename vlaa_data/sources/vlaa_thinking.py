"""Import the published VLAA-Thinking JSON files (``VLAA-Thinking-SFT-126K.json``,
``VLAA-Thinking-GRPO-25K.json``): records ``{id, image, question, gt, ds_answer, caption, meta}``.

Each record becomes a sample plus its already-done caption, distill and rewrite results (the
published answers are final text, so the rewrite is recorded as ``unchanged``); verify stays
pending, so the published data can be re-verified and re-split without calling any model.
Image fields are relative to the images root (``--images``) even when they begin with ``/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from vlaa_data.answers import split_reasoning
from vlaa_data.rewards.registry import REWARD_TYPES
from vlaa_data.sources.base import (
    ImageRef,
    ImportedResult,
    RawSample,
    image_ref,
    register_source,
)
from vlaa_data.sources.row_adapter import RowAdapter

__all__ = ["VlaaThinkingSource", "declared_reward_type", "origin_of", "origin_reward_type"]

# Origin dataset -> reward type, where the source decides it. Keys are normalised (lower case,
# "-" as "_"); the published ids spell them "clevr_math-…", "geoqa170k-…", "synthesis-…",
# "arxivqa-…", "allava-allava_laion_…", "docvqa-…", "vizwiz-…". LLaVA-CoT's COCO and Visual
# Genome rows are boxes or short answers: their answer's shape decides.
_ORIGIN_REWARD = {
    "clevr_math": "digit",
    "clevr": "digit",
    "geoqa170k": "choice",
    "geoqa": "choice",
    "geo170k": "choice",
    "arxivqa": "choice",
    "arxiv_qa": "choice",
    "synthesis": "math",
    "math_puma": "math",
    "mathpuma": "math",
    "docvqa": "open",
    "doc_vqa": "open",
    "vizwiz": "open",
    "viz_wiz": "open",
    "allava": "open",
    "allava_laion": "open",
    "allava_4v": "open",
}


def origin_reward_type(origin: str) -> str | None:
    """The reward type the paper gives an origin dataset, or None (the answer's shape decides)."""
    return _ORIGIN_REWARD.get(origin.strip().lower().replace("-", "_"))


def origin_of(record: Mapping[str, Any]) -> str:
    """The dataset a record came from: ``meta`` when it says so, else the id's prefix."""
    meta = record.get("meta")
    if isinstance(meta, Mapping):
        for key in ("source", "dataset", "ds_name", "data_source"):
            if isinstance(meta.get(key), str) and meta[key]:
                return meta[key]
    record_id = str(record.get("id") or "")
    for separator in ("-", "/"):
        if separator in record_id:
            return record_id.split(separator, 1)[0]
    return "unknown"


def declared_reward_type(record: Mapping[str, Any]) -> str | None:
    """``meta.reward_type`` when it names a reward type (our own exports write it), so that a
    re-imported release keeps the types it was verified with."""
    meta = record.get("meta")
    declared = meta.get("reward_type") if isinstance(meta, Mapping) else None
    return declared if declared in REWARD_TYPES else None


@register_source
class VlaaThinkingSource(RowAdapter):
    name: ClassVar[str] = "vlaa-thinking"

    def image(self, row: Mapping[str, Any]) -> ImageRef | None:
        return image_ref(self.value(row, "image"), self.image_root, rooted_absolute=True)

    def sample(self, row: dict[str, Any]) -> RawSample:
        origin = origin_of(row)
        image = self.image(row)
        question = self.value(row, "question")
        context: dict[str, Any] = {"origin": origin}
        if row.get("meta") not in (None, {}, ""):
            context["meta"] = row["meta"]
        return RawSample(
            source_id=self.source_id(row, image, question),
            question=question,
            answer=self.value(row, "answer", "gt"),
            image=image,
            context=context,
            reward_type=declared_reward_type(row) or origin_reward_type(origin),
            imported=self._imported(row),
            row=row,
        )

    @staticmethod
    def _imported(record: Mapping[str, Any]) -> list[ImportedResult]:
        caption = record.get("caption")
        steps = [
            ImportedResult("caption", {"caption": caption})
            if isinstance(caption, str) and caption.strip()
            else ImportedResult("caption", {"caption": None}, method="not_needed")
        ]
        ds_answer = record.get("ds_answer")
        if isinstance(ds_answer, str) and ds_answer.strip():
            reasoning, answer = split_reasoning(ds_answer)
            text = {"reasoning": reasoning, "answer": answer}
            steps.append(ImportedResult("distill", text))
            steps.append(ImportedResult("rewrite", text, method="unchanged"))
        return steps
