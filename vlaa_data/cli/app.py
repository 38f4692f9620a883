"""The Typer app, the consoles and the options every command shares."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from vlaa_data import __version__
from vlaa_data.store.shards import Shard

# --help lists the commands in the order a dataset is built, then the tools around it.
COMMAND_ORDER = (
    "init",
    "collect",
    "caption",
    "distill",
    "rewrite",
    "verify",
    "filter",
    "split",
    "export",
    "push",
    "run",
    "merge",
    "status",
    "sql",
    "presets",
    "doctor",
    "reward",
    "train",
    "eval",
)


class _PipelineOrder(TyperGroup):
    # Any: the Context of click, or of the copy of click that newer typers carry (typer._click)
    def list_commands(self, ctx: Any) -> list[str]:
        names = super().list_commands(ctx)
        rank = {name: i for i, name in enumerate(COMMAND_ORDER)}
        return sorted(names, key=lambda name: rank.get(name, len(rank)))


app = typer.Typer(
    name="vlaa-data",
    cls=_PipelineOrder,
    help="Build, curate, publish and train on R1-style multimodal reasoning datasets "
    "(the VLAA-Thinking recipe). Every command works on one workspace directory.",
    no_args_is_help=True,
    # --install-completion / --show-completion for bash, zsh, fish and PowerShell
    add_completion=True,
    pretty_exceptions_enable=False,
    # help texts say "[default: …]", which Rich markup would swallow as a tag; in Markdown,
    # an HTML-like <tag> must go in backticks (tests/test_cli.py checks every help text)
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)
out = Console()
err = Console(stderr=True)

Workspace_ = Annotated[
    Path | None,
    typer.Option(
        "-w",
        "--workspace",
        help="Workspace directory [default: $VLAA_WORKSPACE, else the current directory].",
        show_default=False,
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print the report as JSON.")]
# A bad I/N raises SettingsError from the parser: one line, like every user error.
Shard_ = Annotated[
    Shard | None,
    typer.Option(
        "--shard",
        metavar="I/N",
        parser=Shard.parse,
        help="Only the samples of shard I of N, numbered from 0 (0/4 to 3/4), by a hash of "
        "each sample id; run each shard in its own workspace, then `vlaa-data merge`.",
        show_default=False,
    ),
]
# How open-ended rows are scored, the same in reward, eval and train grpo.
Judge = Annotated[
    str | None,
    typer.Option(help="Grade open-ended rows 0-10 with this LLM preset (score = grade / 10)."),
]
JudgeBaseUrl = Annotated[
    str | None, typer.Option(help="The judge's endpoint, overriding the preset's.")
]
RewardModel = Annotated[
    str | None,
    typer.Option(
        help="Score open-ended rows with this reward model (a sequence-classification "
        "checkpoint): 1 - exp(-beta * (S(pred) - S(ref))) when S(pred) > S(ref), else 0."
    ),
]
RewardBeta = Annotated[
    float | None, typer.Option(min=1e-6, help="beta of the reward-model formula [default: 1].")
]
# Image size for a local model, the same in eval and filter ppl (train: the max_pixels field).
MaxPixels = Annotated[
    int,
    typer.Option(
        min=0,
        help="Resize each image to at most N pixels (Qwen2-VL-style processors; 0: the "
        "model's own limit) [default: 262144 = 256 x 32 x 32, the paper's eval setting].",
        show_default=False,
    ),
]


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


def rate(done: int, started: float) -> str:
    elapsed = time.monotonic() - started
    return f"{done / elapsed:,.0f} rows/s" if elapsed > 0 else ""


def _version(value: bool) -> None:
    if value:
        out.print(f"vlaa-data {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Build, curate, publish and train on R1-style multimodal reasoning datasets."""


INTERRUPTED = "interrupted: work written so far is kept; run the command again to resume"


@contextlib.contextmanager
def exit_on_interrupt() -> Iterator[None]:
    """Ctrl-C or SIGTERM inside a command: one line and exit code 130 (Typer would be silent)."""
    try:
        yield
    except KeyboardInterrupt:
        err.print(INTERRUPTED)
        raise typer.Exit(130) from None


def note_recovered(replies: int) -> None:
    """Tell the user that opening the workspace wrote replies a killed run had journaled."""
    if replies:
        err.print(f"recovered {replies} replies that a stopped run had received but not written")


def new_table(title: str, *columns: str) -> Table:
    """A table whose columns named with a trailing ``>`` are right-aligned (numbers)."""
    table = Table(title=title)
    for column in columns:
        right = column.endswith(">")
        table.add_column(column.rstrip(">"), justify="right" if right else "left")
    return table


def command_line() -> str:
    """The command as the user typed it, for the runs table; a password or token written into
    a URL (``--base-url https://user:secret@host/v1``) is left out."""
    from vlaa_data.llm.presets import redact_url

    words = ["vlaa-data", *sys.argv[1:]]
    return " ".join(redact_url(word) if "://" in word else word for word in words)
