"""``run_eval``: load a split of an hf export, generate, score, write the per-sample file."""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vlaa_data.evaluation.data import default_split, load_split, split_shards
from vlaa_data.evaluation.generate import (
    GenerationSettings,
    check_backend,
    generate,
    open_backend,
)
from vlaa_data.evaluation.report import EvalReport, summarise
from vlaa_data.evaluation.samples import write_samples
from vlaa_data.evaluation.scoring import IOU_CORRECT, score_completions
from vlaa_data.rewards.math_pool import MathVerifier
from vlaa_data.rewards.open_scorers import open_scorer_from

__all__ = ["EvalOptions", "default_output", "run_eval"]


@dataclass
class EvalOptions:
    """What to evaluate, on what, and how open-ended rows are scored.

    ``judge`` (an LLM preset, at ``judge_base_url`` if given) or ``reward_model`` (a
    sequence-classification checkpoint, with ``reward_beta``) score open-ended rows; with
    neither they are reported as unscored.
    """

    model: str
    data: Path
    split: str | None = None  # None: test where the export has one, else rl (with a note)
    limit: int | None = None
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    output: Path | None = None
    judge: str | None = None
    judge_base_url: str | None = None
    reward_model: str | None = None
    reward_beta: float = 1.0
    math_deadline_s: float = 2.0
    iou_threshold: float = IOU_CORRECT  # an iou row is correct from this IoU


def default_output(model: str, split: str) -> Path:
    """``eval-<model name>-<split>.jsonl`` in the current folder.

    Never inside the model's folder: a Hub cache or a shared checkpoint may be read-only, and
    a served model has no folder here at all.
    """
    name = Path(model.rstrip("/\\")).name or "model"
    return Path(f"eval-{re.sub(r'[^A-Za-z0-9._-]+', '-', name)}-{split}.jsonl")


def run_eval(
    options: EvalOptions, on_progress: Callable[[int, int], None] | None = None
) -> EvalReport:
    """Evaluate ``options.model`` on the first ``options.limit`` rows of the split.

    Everything that can fail on the user's input (judge key, backend packages, the data
    folder) fails before the model is loaded. ``on_progress(finished, total)`` follows the
    generation.
    """
    started = time.monotonic()
    open_scorer = open_scorer_from(
        options.judge,
        base_url=options.judge_base_url,
        reward_model=options.reward_model,
        beta=options.reward_beta,
    )
    split, note = (options.split, None) if options.split else default_split(options.data)
    split_shards(options.data, split)
    settings = options.generation
    check_backend(settings)
    output = options.output or default_output(options.model, split)
    with tempfile.TemporaryDirectory(prefix="vlaa-eval-images-") as images:
        rows = load_split(options.data, split, Path(images), options.limit)
        backend, model_name = open_backend(options.model, settings)
        generating = time.monotonic()
        generations = generate(rows, backend, model_name, settings, on_progress)
        generation_seconds = time.monotonic() - generating
    completions = [None if g.error else g.completion for g in generations]
    with MathVerifier(deadline_s=options.math_deadline_s) as math:
        scores = score_completions(
            rows,
            completions,
            math=math,
            open_scorer=open_scorer,
            iou_threshold=options.iou_threshold,
        )
    write_samples(output, rows, generations, scores)
    report = EvalReport(
        model=options.model,
        data=str(options.data),
        split=split,
        limit=options.limit,
        output=str(output),
        generation=settings.to_dict(),
        open_scorer=options.judge or options.reward_model,
        generation_seconds=generation_seconds,
        note=note,
        iou_threshold=options.iou_threshold,
    )
    summarise(report, rows, generations, scores)
    report.seconds = time.monotonic() - started
    return report
