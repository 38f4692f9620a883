#!/usr/bin/env bash
# Install vlaa-data with everything its tests need, type-check it, then run the test suite.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k collect`).
#
# Outside a virtualenv it makes one (.venv) and installs there, never into the system Python.
set -euo pipefail
cd "$(dirname "$0")/.."
base="${PYTHON:-$(command -v python3 || command -v python)}"
if ! "$base" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    echo "error: vlaa-data needs Python >= 3.10; $base is $("$base" -V 2>&1)" >&2
    exit 1
fi
if [[ -z "${VIRTUAL_ENV:-}" ]]; then
    [[ -x .venv/bin/python ]] || "$base" -m venv .venv
    # shellcheck disable=SC1091
    . .venv/bin/activate
fi
pip_install() { python -m pip install --quiet --disable-pip-version-check "$@"; }
# torch first, the CPU build: an unpinned torch, or this pin from PyPI on Linux, pulls several
# GB of CUDA packages. With 2.13.0 in place the train extra's torch requirement installs
# nothing more. Without the PyTorch index (a closed network) pip finds the pin where it is
# configured to look.
torch_index=https://download.pytorch.org/whl/cpu
if python -c "import urllib.request as u; u.urlopen('$torch_index/torch/', timeout=5)" \
    2>/dev/null; then
    pip_install torch==2.13.0 --index-url "$torch_index" --extra-index-url https://pypi.org/simple
else
    pip_install torch==2.13.0
fi
pip_install -e ".[dev,train]"
# The type check covers the whole package whatever pytest is asked to run ([tool.mypy]).
python -m mypy
python -m pytest "$@"
