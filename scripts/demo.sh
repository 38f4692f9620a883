#!/usr/bin/env bash
# Install vlaa-data and build a small dataset from the bundled synthetic sample with
# `vlaa-data run`: collect → caption → distill → rewrite → verify → aha → split → export hf.
#
# Usage: bash scripts/demo.sh [--base-url URL | --scripted] [WORKSPACE]   (default: ./demo-workspace)
#
#   OPENAI_API_KEY and DEEPSEEK_API_KEY set   the presets' hosted models, 20 samples, $1 a step
#   --base-url URL                            every LLM step on your OpenAI-compatible server
#                                             (e.g. `vllm serve Qwen/Qwen2.5-VL-7B-Instruct`)
#   --scripted                                a scripted stand-in server on 127.0.0.1: watch
#                                             the mechanics without an account (its replies
#                                             are placeholders, marked scripted; run again
#                                             with a real endpoint to replace them)
#   none of these                             collects, then says exactly what to set
#
# Running it again goes on where it stopped. The export opens with
# datasets.load_dataset("WORKSPACE/releases/v1/hf").
#
# It installs vlaa-data (pip install -e .) with the `python` on PATH, which must be Python >= 3.10
# in a virtualenv: `python -m venv .venv && . .venv/bin/activate` first. With
# VLAA_DEMO_PYTHON=PATH (as the tests run it) it installs nothing and runs vlaa-data with that
# Python, where vlaa-data must be installed already.
set -euo pipefail
cd "$(dirname "$0")/.."
workspace=demo-workspace
run_args=()
scripted=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --base-url) run_args+=(--base-url "$2"); shift 2 ;;
        --scripted) scripted=1; shift ;;
        -*) echo "unknown option $1 (see the top of $0)" >&2; exit 2 ;;
        *) workspace="$1"; shift ;;
    esac
done
python="${VLAA_DEMO_PYTHON:-$(command -v python || command -v python3 || echo python)}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    echo "error: vlaa-data needs Python >= 3.10; $python is $("$python" -V 2>&1)" >&2
    exit 1
fi
if [[ -z "${VLAA_DEMO_PYTHON:-}" ]]; then
    if [[ -z "${VIRTUAL_ENV:-}" ]] \
        && "$python" -c 'import sys; sys.exit(sys.prefix != sys.base_prefix)'; then
        echo "error: not in a virtualenv, so not installing into $python: run" \
            "\`python -m venv .venv && . .venv/bin/activate\` first" >&2
        exit 1
    fi
    "$python" -m pip install --quiet --disable-pip-version-check -e .
fi
vlaa_data() { "$python" -m vlaa_data "$@"; }
if [[ ! -f "$workspace/vlaa.toml" ]]; then
    vlaa_data init "$workspace"
    cat >>"$workspace/vlaa.toml" <<'EOF'

# Added by scripts/demo.sh: what `vlaa-data run` collects.
[[run.collect]]
source = "synthetic"
limit = 200
seed = 0
EOF
fi
if [[ $scripted == 1 ]]; then
    log="$(mktemp)"
    "$python" -m vlaa_data.testing.server --demo --reasoning lone >"$log" &
    server=$!
    trap 'kill "$server" 2>/dev/null; rm -f "$log"' EXIT
    until grep -q "listening on" "$log"; do sleep 0.1; done
    run_args+=(--base-url "$(sed -n 's/^listening on //p' "$log")")
    echo "using the scripted local server: placeholder replies, not a model's" \
        "(vlaa-data status counts them as scripted)"
elif [[ ${#run_args[@]} == 0 && -n "${OPENAI_API_KEY:-}" && -n "${DEEPSEEK_API_KEY:-}" ]]; then
    run_args+=(--limit 20 --budget-usd 1)
fi
if ! vlaa_data run ${run_args[@]+"${run_args[@]}"} -w "$workspace"; then
    [[ ${#run_args[@]} == 0 ]] && echo "or try it offline: bash scripts/demo.sh --scripted" >&2
    exit 1
fi
vlaa_data status -w "$workspace"
