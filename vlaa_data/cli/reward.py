"""``vlaa-data reward``: score a JSONL file of completions with the verifiers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from vlaa_data.cli.app import (
    Json,
    Judge,
    JudgeBaseUrl,
    RewardModel,
    app,
    new_table,
    out,
    print_json,
)
from vlaa_data.errors import VlaaError


@app.command()
def reward(
    file: Annotated[Path, typer.Argument(help="JSONL rows: completion, answer, reward_type.")],
    out_file: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Where to write the scored rows [default: FILE]."),
    ] = None,
    deadline: Annotated[
        float, typer.Option(help="Seconds a single math check may take.", min=0.1)
    ] = 2.0,
    judge: Judge = None,
    base_url: JudgeBaseUrl = None,
    reward_model: RewardModel = None,
    beta: Annotated[float, typer.Option(min=1e-6, help="beta of the reward-model formula.")] = 1.0,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Read answers as train grpo and eval do: only the last `<answer>` block after "
            "`</think>`; no tags, reward 0. Default: the lenient reader verify uses.",
        ),
    ] = False,
    json_: Json = False,
) -> None:
    """Score completions with the rewards train grpo uses; each row gets "reward".

    Rows: {"completion": str, "answer": str, "reward_type": str, "image_size": [w, h],
    "question": str}. A row that cannot be scored keeps "reward": null and a "reward_note"
    saying why. Open-ended rows need --judge or --reward-model. Answers are read as verify
    reads distilled traces; --strict reads them as train grpo and eval do.

    Example: vlaa-data reward outputs.jsonl --out scored.jsonl

    Example: OPENAI_API_KEY=... vlaa-data reward outputs.jsonl --judge gpt-4o-mini
    """
    from vlaa_data.rewards.math_pool import MathVerifier
    from vlaa_data.rewards.open_scorers import open_scorer_from
    from vlaa_data.rewards.score_file import score_file

    if not file.is_file():
        raise VlaaError(f"no such file: {file}")
    if judge and reward_model:
        raise VlaaError("pass --judge or --reward-model, not both")
    open_scorer = open_scorer_from(judge, base_url=base_url, reward_model=reward_model, beta=beta)
    with MathVerifier(deadline_s=deadline) as math:
        summary = score_file(
            file, out_file or file, math=math, open_scorer=open_scorer, strict=strict
        )
    if json_:
        print_json(summary.to_dict())
        return
    table = new_table(
        f"{summary.rows} rows", "reward type", "rows>", "scored>", "mean>", "unscored"
    )
    for kind, entry in sorted(summary.by_type.items()):
        mean = "-" if entry.mean is None else f"{entry.mean:.3f}"
        notes = ", ".join(f"{n} {note}" for note, n in sorted(entry.unscored.items()))
        table.add_row(Text(kind), str(entry.rows), str(entry.scored), mean, notes)
    out.print(table)
    out.print(f"written to {out_file or file}")
