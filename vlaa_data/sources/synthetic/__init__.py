"""The synthetic source: verifiable image/question/answer samples drawn with Pillow.

``vlaa-data collect synthetic`` (all kinds, round-robin) or ``synthetic:<kind>``. Sample ``i``
of a kind is a pure function of (seed, kind, i): its id is ``<kind>-<seed>-<i>``, and the same
seed gives the same questions, answers and image bytes, whatever the limit or the other kinds.

Each kind module offers ``make_scene(rng)`` (cheap, no drawing), ``question(scene)``,
``answer(scene)``, ``render(scene) -> PNG bytes`` and its ``REWARD_TYPE``. Images are drawn only
when the collect step loads them, through a picklable ``functools.partial(render, scene)``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType

from vlaa_data.errors import SourceError
from vlaa_data.sources.base import (
    ImageRef,
    ImportedResult,
    RawSample,
    Source,
    SourceOptions,
    register_source,
)
from vlaa_data.sources.synthetic import chart, counting, grounding, plot

__all__ = ["DEFAULT_LIMIT", "KINDS", "SyntheticSource", "SyntheticTracesSource", "generate"]

_MODULES: dict[str, ModuleType] = {
    "counting": counting,
    "plot": plot,
    "chart": chart,
    "grounding": grounding,
}
KINDS: tuple[str, ...] = tuple(_MODULES)
DEFAULT_LIMIT = 1000


def generate(kind: str, seed: int, index: int) -> RawSample:
    """Sample ``index`` of ``kind`` for ``seed``; its image is drawn only when loaded."""
    module = _MODULES.get(kind)
    if module is None:
        raise SourceError(f"unknown synthetic kind {kind!r}; choose from {', '.join(KINDS)}")
    # A string seed is hashed with SHA-512 by `random`, so it is stable across runs and
    # independent of PYTHONHASHSEED.
    scene = module.make_scene(random.Random(f"{seed}:{kind}:{index}"))
    # Through JSON so the context holds exactly what the store will give back (lists, not tuples).
    context = json.loads(json.dumps({"kind": kind, **dataclasses.asdict(scene)}))
    return RawSample(
        source_id=f"{kind}-{seed}-{index}",
        question=module.question(scene),
        answer=module.answer(scene),
        image=ImageRef(render=functools.partial(module.render, scene)),
        context=context,
        reward_type=module.REWARD_TYPE,
    )


@register_source
class SyntheticSource(Source):
    """``options.limit`` samples (default 1000) from ``options.seed`` (default 0)."""

    name = "synthetic"
    handles_limit = True

    def __init__(
        self, path: Path | None, options: SourceOptions, kinds: Sequence[str] | None = None
    ) -> None:
        super().__init__(path, options)
        # "counting,plot" is accepted as well as ["counting", "plot"]; nothing means all kinds.
        names = [k.strip() for item in kinds or () for k in item.split(",") if k.strip()]
        unknown = [k for k in names if k not in _MODULES]
        if unknown:
            raise SourceError(
                f"unknown synthetic kind {', '.join(map(repr, unknown))}; "
                f"choose from {', '.join(KINDS)}"
            )
        self.kinds: tuple[str, ...] = tuple(names) or KINDS
        self.limit = DEFAULT_LIMIT if options.limit is None else options.limit
        if self.limit < 0:
            raise SourceError(f"--limit must be 0 or more, not {self.limit}")
        self.seed = 0 if options.seed is None else options.seed

    def rows(self) -> Iterator[RawSample]:
        for index in range(self.limit):
            yield generate(self.kinds[index % len(self.kinds)], self.seed, index)


# The stand-in traces: most reach the gold answer, some second-guess themselves first (an aha
# moment for the filter), some give up (verify rejects them).
_STAND_IN_MODEL = "synthetic-stand-in"
_CORRECT, _AHA = 0.8, 0.2


def stand_in_trace(sample: RawSample, seed: int) -> list[ImportedResult]:
    """Caption, distill and rewrite results as an R1 run would leave them, drawn from (seed,
    id): a placeholder for real traces, so verify, the filters and split can run without a
    model (benchmarks, demos at scale)."""
    rng = random.Random(f"{seed}:trace:{sample.source_id}")
    question = str(sample.question).splitlines()[0]
    reasoning = f"The question asks: {question} Let me look at the image closely."
    if rng.random() < _AHA:
        reasoning += " Wait, let me count again to be sure."
    answer = str(sample.answer) if rng.random() < _CORRECT else "I cannot tell from the image."
    text = {"reasoning": reasoning, "answer": answer}
    return [
        ImportedResult("caption", {"caption": None}, method="not_needed"),
        ImportedResult("distill", text, model=_STAND_IN_MODEL),
        ImportedResult("rewrite", text, method="unchanged", model=_STAND_IN_MODEL),
    ]


@register_source
class SyntheticTracesSource(SyntheticSource):
    """``synthetic-r1``: the synthetic samples, each with a stand-in R1 trace already
    imported (caption, distill, rewrite done, by model ``synthetic-stand-in``), as a
    VLAA-Thinking import leaves them. For runs at scale without a model; not training data."""

    name = "synthetic-r1"

    def rows(self) -> Iterator[RawSample]:
        for sample in super().rows():
            sample.imported = stand_in_trace(sample, self.seed)
            yield sample
