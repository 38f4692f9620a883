#!/usr/bin/env bash
# Install vlaa-data and run the pipeline on the bundled synthetic sample.
# Usage: bash scripts/demo.sh [WORKSPACE]   (default: ./demo-workspace)
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check -e .
workspace="${1:-demo-workspace}"
vlaa-data init "$workspace"
vlaa-data collect synthetic --limit 200 --seed 0 -w "$workspace"
vlaa-data status -w "$workspace"
