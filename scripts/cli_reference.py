"""Render the CLI reference (docs/cli.md) from the commands themselves.

    python scripts/cli_reference.py           # print it
    python scripts/cli_reference.py --write   # replace the block in docs/cli.md

tests/test_readme.py fails when docs/cli.md and the commands disagree.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any

import typer.main

from vlaa_data.cli import app

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
START, END = "<!-- cli-reference:start -->", "<!-- cli-reference:end -->"


def _option_row(param: Any, ctx: Any) -> str:
    if param.param_type_name == "argument":
        name, help_text = " ".join(param.get_usage_pieces(ctx)), param.help or ""
    else:
        name, help_text = param.get_help_record(ctx)
    cell = " ".join(help_text.split()).replace("|", "\\|")
    return f"| `{name}` | {cell} |"


def render() -> str:
    group = typer.main.get_command(app)
    parts = []
    commands = []
    root = group.context_class(group, info_name="vlaa-data")
    for name in group.list_commands(root):  # in the order --help lists them
        command = group.commands[name]
        subcommands = getattr(command, "commands", None)  # a group such as `filter`
        if subcommands:
            commands.extend((f"{name} {sub}", c) for sub, c in subcommands.items())
        else:
            commands.append((name, command))
    for name, command in commands:
        ctx = command.context_class(command, info_name=f"vlaa-data {name}")
        doc = inspect.cleandoc(command.help or "")
        parts.append(f"### `vlaa-data {name}`\n\n{doc}\n\n```\n{command.get_usage(ctx)}\n```\n")
        shown = [p for p in command.params if p.name != "help" and not getattr(p, "hidden", False)]
        rows = [_option_row(p, ctx) for p in shown]
        parts.append("| argument / option | meaning |\n|---|---|\n" + "\n".join(rows) + "\n")
    return "\n".join(parts)


def readme_block(text: str) -> str:
    start, end = text.index(START) + len(START), text.index(END)
    return text[start:end].strip("\n")


def main() -> None:
    reference = render().strip("\n")
    if "--write" not in sys.argv:
        print(reference)
        return
    text = REFERENCE.read_text(encoding="utf-8")
    start, end = text.index(START) + len(START), text.index(END)
    REFERENCE.write_text(text[:start] + "\n" + reference + "\n" + text[end:], encoding="utf-8")


if __name__ == "__main__":
    main()
