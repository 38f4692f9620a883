"""Scale-out: N synthetic samples collect -> verify -> aha -> split as sharded tasks on
datatrove's local executor, with 1 worker and then 2 (``vlaa-data run --executor local``).

    python benchmarks/scale.py                              # 1,000,000 samples, 1 and 2 workers
    python benchmarks/scale.py --samples 50000 --workers 1,2,4
    python benchmarks/scale.py --workers 2 --memory-limit 4GB   # 500,000 samples a shard

The source is ``synthetic-r1``: synthetic samples that come with a stand-in R1 trace, so verify
runs by rules with no model. Each task is one shard in its own workspace with one image worker
and one math worker (so a "worker" is one task's processes); the merge and the split run after
them, in one process. Prints, per worker count, the wall time of each phase (the shards' steps
side by side, then merge and split), samples/s overall and per worker, and the speed-up over
one worker. Workspaces go to a temporary folder, removed afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_STEPS = "collect,verify,aha,split"


def run_once(root: Path, samples: int, workers: int, memory_limit: str | None) -> dict[str, float]:
    workspace = root / f"workers-{workers}"
    subprocess.run([sys.executable, "-m", "vlaa_data", "init", str(workspace)], check=True)
    with (workspace / "vlaa.toml").open("a", encoding="utf-8") as config:
        config.write(f'\n[[run.collect]]\nsource = "synthetic-r1"\nlimit = {samples}\n')
    env = {**os.environ, "VLAA_COLLECT_WORKERS": "1", "VLAA_VERIFY_MATH_WORKERS": "1"}
    if memory_limit:  # each task's DuckDB (the default 1GB holds about 200,000 samples' verify)
        env["VLAA_STORE_MEMORY_LIMIT"] = memory_limit
    command = [
        *(sys.executable, "-m", "vlaa_data", "run", "--steps", _STEPS, "--rules-only"),
        *("--executor", "local", "--tasks", str(workers), "--workers", str(workers)),
        *("--json", "-w", str(workspace)),
    ]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"run with {workers} workers failed:\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout)
    steps = report["steps"]
    shards = sum(steps[s]["seconds"] for s in ("collect", "verify", "aha"))
    return {
        "workers": workers,
        "seconds": seconds,
        "collect_s": steps["collect"]["seconds"],
        "verify_s": steps["verify"]["seconds"],
        "aha_s": steps["aha"]["seconds"],
        "shard_steps_s": shards,
        "split_s": steps["split"]["seconds"],
        # start-up of the tasks, taking shards, the merge: what the steps do not account for
        "engine_and_merge_s": seconds - shards - steps["split"]["seconds"],
        "collected": steps["collect"]["done"],
        "verified": steps["verify"]["done"],
        "samples_per_s": samples / seconds,
        "per_worker": samples / seconds / workers,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--keep", action="store_true", help="keep the workspaces")
    parser.add_argument("--memory-limit", help="each task's [store] memory_limit, e.g. 4GB")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    root = Path(tempfile.mkdtemp(prefix="vlaa-scale-"))
    print(f"{args.samples:,} samples, {os.cpu_count()} cores, workspaces in {root}")
    results = []
    try:
        for workers in counts:
            result = run_once(root, args.samples, workers, args.memory_limit)
            results.append(result)
            print(
                f"{workers} worker(s): {result['seconds']:.1f} s (slowest shard's collect "
                f"{result['collect_s']:.1f} s, verify {result['verify_s']:.1f} s, aha "
                f"{result['aha_s']:.1f} s; split {result['split_s']:.1f} s; engine start-up "
                f"and merge {result['engine_and_merge_s']:.1f} s), "
                f"{result['samples_per_s']:,.0f} samples/s, "
                f"{result['per_worker']:,.0f} per worker; "
                f"{result['collected']:,} collected, {result['verified']:,} verified correct",
                flush=True,
            )
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    base = results[0]
    for result in results[1:]:
        speedup = result["samples_per_s"] / base["samples_per_s"]
        print(
            f"scaling {base['workers']} -> {result['workers']} workers: {speedup:.2f}x "
            f"({speedup / (result['workers'] / base['workers']):.0%} of linear)"
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
