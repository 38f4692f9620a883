"""scripts/test.sh, what CI runs: it installs into a virtualenv, never into the Python on PATH.

The script runs from a copy of the repository's scripts/ in a temporary folder, with a
stand-in Python that only records what it is asked to do, so nothing is installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _stand_in(path: Path, log: Path, body: str = "") -> Path:
    """A ``python`` that logs its arguments, answers the version check, and runs ``body``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'#!/usr/bin/env bash\necho "$0 $*" >> "{log}"\n{body}\nexit 0\n', encoding="utf-8"
    )
    path.chmod(0o755)
    return path


def _run_test_sh(repo: Path, python: Path, **env: str) -> subprocess.CompletedProcess[str]:
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "test.sh", repo / "scripts" / "test.sh")
    environment = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    environment |= {"PYTHON": str(python), **env}
    return subprocess.run(
        ["bash", str(repo / "scripts" / "test.sh"), "-k", "collect"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_outside_a_virtualenv_it_makes_one_and_installs_only_there(tmp_path: Path) -> None:
    repo, log = tmp_path / "repo", tmp_path / "calls.log"
    venv_python = repo / ".venv" / "bin" / "python"
    # `python -m venv .venv` makes a virtualenv whose python is another stand-in.
    make_venv = (
        f'if [[ "$1 $2" == "-m venv" ]]; then mkdir -p "{venv_python.parent}"\n'
        f'  cp "$0" "{venv_python}"\n'
        f'  echo \'export PATH="{venv_python.parent}:$PATH" VIRTUAL_ENV="{repo / ".venv"}"\' '
        f'> "{venv_python.parent / "activate"}"\nfi'
    )
    base = _stand_in(tmp_path / "base" / "python3", log, make_venv)
    result = _run_test_sh(repo, base)
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    by_base = [c.split(" ", 1)[1] for c in calls if c.startswith(str(base))]
    by_venv = [c.split(" ", 1)[1] for c in calls if c.startswith(str(venv_python))]
    assert "-m venv .venv" in by_base
    assert not any("pip" in c for c in by_base), by_base  # nothing installed outside .venv
    installs = [c for c in by_venv if c.startswith("-m pip install")]
    assert any("torch==2.13.0" in c for c in installs)
    assert any("-e .[dev,train]" in c for c in installs)
    assert by_venv[-2:] == ["-m mypy", "-m pytest -k collect"]


def test_it_says_which_python_it_needs(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    old = _stand_in(
        tmp_path / "base" / "python3",
        log,
        '[[ "$1" == -V ]] && { echo "Python 3.8.18"; exit 0; }\n[[ "$1" == -c ]] && exit 1',
    )
    result = _run_test_sh(tmp_path / "repo", old)
    assert result.returncode == 1
    error = result.stderr.strip().splitlines()
    assert len(error) == 1 and "needs Python >= 3.10" in error[0]
    assert error[0].endswith("is Python 3.8.18")
    assert not (tmp_path / "repo" / ".venv").exists()


def test_no_test_installs_packages_or_runs_a_vlaa_data_from_path() -> None:
    """Tests run the CLI as ``sys.executable -m vlaa_data`` and install nothing anywhere."""
    import re

    bare_cli = re.compile(r"""\[\s*["']vlaa-data["']\s*,""")  # a command line starting so
    install = re.compile(r"""["']-m["']\s*,\s*["']pip["']|["']pip["']\s*,\s*["']install["']""")
    for path in sorted((ROOT / "tests").rglob("*.py")):
        if path.name == "test_scripts.py":
            continue
        text = path.read_text(encoding="utf-8")
        assert not bare_cli.search(text), f"{path}: runs vlaa-data from PATH"
        assert not install.search(text), f"{path}: installs a package"
