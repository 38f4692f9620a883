"""The README stays true: short, pointing to docs/, whose CLI reference matches the commands,
and CI runs its test command."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

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
    reference = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert module.readme_block(reference) == module.render().strip("\n"), (
        "docs/cli.md is stale: run `python scripts/cli_reference.py --write`"
    )


def test_the_readme_is_short_and_points_to_every_doc() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    for doc in sorted((ROOT / "docs").glob("*.md")):
        assert f"](docs/{doc.name})" in readme, doc.name
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / link).is_file(), link


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci/run").read_text().strip().splitlines()
    command = [line for line in ci if line and not line.startswith(("#", "set ", "cd "))][-1]
    assert command == "bash scripts/test.sh"
    assert command in (ROOT / "README.md").read_text(encoding="utf-8")


def _demo(workspace: Path, *args: str, python: str | None = sys.executable, **env: str):
    """``bash scripts/demo.sh ARGS WORKSPACE`` with vlaa-data as installed for this interpreter:
    ``VLAA_DEMO_PYTHON`` makes the demo install nothing and run ``python -m vlaa_data``."""
    environment = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    environment.pop("VLAA_DEMO_PYTHON", None)
    if python is not None:
        environment["VLAA_DEMO_PYTHON"] = python
    environment.update(env)
    return subprocess.run(
        ["bash", str(ROOT / "scripts/demo.sh"), *args, str(workspace)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )


def _status(workspace: Path) -> dict:
    status = subprocess.run(
        [sys.executable, "-m", "vlaa_data", "status", "--json", "-w", str(workspace)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(status.stdout)


def _fake_python(folder: Path, body: str) -> Path:
    """A ``python`` on a PATH of its own, running the bash ``body``."""
    folder.mkdir()
    python = folder / "python"
    python.write_text(f"#!/usr/bin/env bash\n{body}\n")
    python.chmod(0o755)
    return folder


def test_the_demo_builds_a_dataset_that_load_dataset_opens(tmp_path: Path) -> None:
    """The README's main command, against the scripted stand-in server: every step, then an
    hf export that ``datasets`` loads; run again, it asks the server for nothing new."""
    import datasets

    workspace = tmp_path / "demo"
    result = _demo(workspace, "--scripted")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "using the scripted local server" in result.stdout
    status = _status(workspace)
    steps = status["steps"]
    assert steps["collect"]["done"] == 200
    assert steps["caption"]["done"] == steps["distill"]["done"] == 200
    # Some of the stand-in's texts mention "the description": rewrite edits those.
    assert steps["rewrite"]["done"] == 200 and status["llm"]["rewrite"]["calls"] > 0
    # Its answers vary with the question, mostly right: verify passes most, rejects some.
    verify = steps["verify"]
    assert verify["done"] + verify["rejected"] == 200 and 150 <= verify["done"] < 200
    release = status["releases"]["v1"]
    # Some texts catch themselves ("wait, let me double-check"): split sends those to RL.
    assert release["sft"] > 0 and release["rl"] > 0
    # And every reply is marked as the stand-in's: placeholders, counted per step.
    assert status["scripted"] == {
        "caption": 200,
        "distill": 200,
        "rewrite": status["llm"]["rewrite"]["calls"],
    }
    (endpoint,) = status["endpoints"]["distill"]
    assert status["endpoints"]["distill"][endpoint] == {"results": 200, "scripted": 200}
    assert "came from the scripted stand-in server" in " ".join(result.stdout.split())
    # A cache of its own: datasets caches a folder by its name, "hf", and would hand back an
    # earlier run's export.
    hf = str(workspace / "releases/v1/hf")
    loaded = datasets.load_dataset(hf, cache_dir=str(tmp_path / "hf-cache"))
    assert {name: len(split) for name, split in loaded.items()} == {
        name: n for name, n in release.items() if n
    }
    assert sum(release.values()) == verify["done"] > 0
    assert "messages" in loaded[next(iter(loaded))].column_names
    again = _demo(workspace, "--scripted")
    assert again.returncode == 0, again.stderr[-2000:]
    assert _status(workspace)["llm"] == status["llm"]  # nothing asked, nothing paid, twice


def test_the_demo_without_an_endpoint_stops_after_collect_saying_what_to_set(
    tmp_path: Path,
) -> None:
    workspace = tmp_path / "demo"
    result = _demo(workspace)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1
    assert "OPENAI_API_KEY" in error[0] and "DEEPSEEK_API_KEY" in error[0]
    assert "--base-url" in error[0]
    assert "bash scripts/demo.sh --scripted" in result.stderr
    steps = _status(workspace)["steps"]
    assert steps["collect"]["done"] == 200 and steps["caption"]["pending"] == 200


def test_the_demo_installs_only_into_a_virtualenv(tmp_path: Path) -> None:
    base = Path(sys.base_prefix) / "bin" / "python3"
    if not base.exists():
        pytest.skip(f"no base interpreter at {base}")
    # The interpreter outside any virtualenv, with pip stopped should the demo call it anyway.
    bin_dir = _fake_python(
        tmp_path / "bin",
        f'[[ "$1 $2" == "-m pip" ]] && exit 99\nexec {shlex.quote(str(base))} "$@"',
    )
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    result = _demo(tmp_path / "demo", python=None, PATH=path, VIRTUAL_ENV="")
    assert result.returncode == 1, result.stderr
    error = result.stderr.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: not in a virtualenv")
    assert "`python -m venv .venv && . .venv/bin/activate`" in error[0]
    assert not (tmp_path / "demo").exists()


def test_the_demo_says_which_python_it_needs(tmp_path: Path) -> None:
    bin_dir = _fake_python(
        tmp_path / "bin", '[[ "$1" == -V ]] && echo "Python 3.8.18"\n[[ "$1" == -V ]]'
    )
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    result = _demo(tmp_path / "demo", python=None, PATH=path, VIRTUAL_ENV="/some/venv")
    assert result.returncode == 1
    error = result.stderr.strip().splitlines()
    assert len(error) == 1 and "needs Python >= 3.10" in error[0]
    assert error[0].endswith("is Python 3.8.18")
