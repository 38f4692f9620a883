"""``vlaa-data reward``: score a JSONL file of completions with the verifiers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vlaa_data.cli.app import Json, app, new_table, out, print_json
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
    json_: Json = False,
) -> None:
    """Score completions with the rewards train grpo uses; each row gets "reward".

    Rows: {"completion": str, "answer": str, "reward_type": str, "image_size": [w, h]}.
    A row that cannot be scored keeps "reward": null and a "reward_note" saying why.

    Example: vlaa-data reward outputs.jsonl --out scored.jsonl
    """
    from vlaa_data.rewards.math_pool import MathVerifier
    from vlaa_data.rewards.score_file import score_file

    if not file.is_file():
        raise VlaaError(f"no such file: {file}")
    with MathVerifier(deadline_s=deadline) as math:
        summary = score_file(file, out_file or file, math=math)
    if json_:
        print_json(summary.to_dict())
        return
    table = new_table(
        f"{summary.rows} rows", "reward type", "rows>", "scored>", "mean>", "unscored"
    )
    for kind, entry in sorted(summary.by_type.items()):
        mean = "-" if entry.mean is None else f"{entry.mean:.3f}"
        notes = ", ".join(f"{n} {note}" for note, n in sorted(entry.unscored.items()))
        table.add_row(kind, str(entry.rows), str(entry.scored), mean, notes)
    out.print(table)
    out.print(f"written to {out_file or file}")
