"""The README stays true: its CLI reference matches the commands, and CI runs its test command."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _reference_module():
    spec = importlib.util.spec_from_file_location(
        "cli_reference", ROOT / "scripts/cli_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_matches_the_commands() -> None:
    module = _reference_module()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert module.readme_block(readme) == module.render().strip("\n"), (
        "README CLI reference is stale: run `python scripts/cli_reference.py --write`"
    )


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci/run").read_text().strip().splitlines()
    command = [line for line in ci if line and not line.startswith(("#", "set ", "cd "))][-1]
    assert command == "bash scripts/test.sh"
    assert command in (ROOT / "README.md").read_text(encoding="utf-8")
