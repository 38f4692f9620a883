#!/usr/bin/env bash
# Install vlaa-data with everything its tests need, then run the test suite.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k collect`).
set -euo pipefail
cd "$(dirname "$0")/.."
# torch first, pinned: on CPU machines an unpinned torch pulls several GB of CUDA packages,
# and with 2.13.0 in place the train extra's torch requirement installs nothing more.
python -m pip install --quiet --disable-pip-version-check torch==2.13.0
python -m pip install --quiet --disable-pip-version-check -e ".[dev,train]"
python -m pytest "$@"
