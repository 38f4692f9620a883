"""``vlaa-data eval``: generate with a model on an export's split and score with the rewards.

data.py      the rows of one split of an hf export, images written to a folder
generate.py  one completion per row through an in-process or HTTP backend
scoring.py   rewards of given completions (MixedReward), correctness, notes
report.py    accuracy and mean reward overall, per reward type, per source
samples.py   the per-sample JSONL file
run.py       ``run_eval``: all of the above, in order
"""

from __future__ import annotations

from vlaa_data.evaluation.data import EvalRow, load_split
from vlaa_data.evaluation.generate import Generation, GenerationSettings
from vlaa_data.evaluation.report import EvalReport, GroupStats
from vlaa_data.evaluation.run import EvalOptions, default_output, run_eval
from vlaa_data.evaluation.scoring import SampleScore, score_completions

__all__ = [
    "EvalOptions",
    "EvalReport",
    "EvalRow",
    "Generation",
    "GenerationSettings",
    "GroupStats",
    "SampleScore",
    "default_output",
    "load_split",
    "run_eval",
    "score_completions",
]
