#!/usr/bin/env bash
# Install vlaa-data and run the pipeline (collect → caption → distill → rewrite → verify) on the
# bundled synthetic sample.
# Usage: bash scripts/demo.sh [WORKSPACE]   (default: ./demo-workspace)
#
# The LLM steps use OPENAI_API_KEY (caption, gpt-4o-mini) and DEEPSEEK_API_KEY (distill,
# deepseek-r1) when both are set, on 20 samples. Without them they run against a scripted
# OpenAI-compatible stand-in on 127.0.0.1, so the mechanics can be watched without an account.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check -e .
workspace="${1:-demo-workspace}"
vlaa-data init "$workspace"
vlaa-data collect synthetic --limit 200 --seed 0 -w "$workspace"
if [[ -n "${OPENAI_API_KEY:-}" && -n "${DEEPSEEK_API_KEY:-}" ]]; then
    vlaa-data caption --model gpt-4o-mini --limit 20 --budget-usd 1 -w "$workspace"
    vlaa-data distill --model deepseek-r1 --limit 20 --budget-usd 1 -w "$workspace"
    vlaa-data rewrite --model gpt-4o-mini --budget-usd 1 -w "$workspace"
    vlaa-data verify --judge gpt-4o-mini --budget-usd 1 -w "$workspace"
else
    echo "OPENAI_API_KEY / DEEPSEEK_API_KEY not both set: using the scripted local server"
    log="$(mktemp)"
    python -m vlaa_data.testing.server --reasoning lone >"$log" &
    server=$!
    trap 'kill "$server" 2>/dev/null' EXIT
    until grep -q "listening on" "$log"; do sleep 0.1; done
    url="$(sed -n 's/^listening on //p' "$log")"
    vlaa-data caption --model scripted-vlm --base-url "$url" -w "$workspace"
    vlaa-data distill --model scripted-r1 --base-url "$url" -w "$workspace"
    vlaa-data rewrite --model scripted-chat --base-url "$url" -w "$workspace"
    vlaa-data verify --rules-only -w "$workspace"
fi
vlaa-data status -w "$workspace"
