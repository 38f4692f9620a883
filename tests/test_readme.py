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


def test_the_demo_script_runs_the_pipeline_without_any_key(tmp_path: Path) -> None:
    import json
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    workspace = tmp_path / "demo"
    result = subprocess.run(
        ["bash", str(ROOT / "scripts/demo.sh"), str(workspace)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "using the scripted local server" in result.stdout
    status = subprocess.run(
        ["vlaa-data", "status", "--json", "-w", str(workspace)],
        capture_output=True,
        text=True,
        check=True,
    )
    steps = json.loads(status.stdout)["steps"]
    assert steps["caption"]["done"] == steps["distill"]["done"] == 200
    assert steps["rewrite"]["done"] == 200  # the stand-in's reasoning never mentions a caption
    # The stand-in answers "3" to everything: verified correct exactly where the gold is 3.
    verify = steps["verify"]
    assert verify["done"] + verify["rejected"] == 200 and 0 < verify["done"] < 200
