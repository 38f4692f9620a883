"""Collect N synthetic samples into a fresh workspace, then time ``status --json``.

    python benchmarks/collect_scale.py                  # 200,000 samples (the target run)
    python benchmarks/collect_scale.py --samples 5000   # a quick look

Prints samples/s, peak RSS (the collect process, and the whole process tree with its image
workers) and status latency (in-process, and the CLI's wall time including start-up).
Goals: 200,000 samples in <= 10 minutes on 2 cores, RSS <= 2 GB, status <= 1 s.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil


def _tree_rss(process: psutil.Process) -> tuple[int, int]:
    """(RSS of the process, RSS of it and all its descendants), in bytes."""
    try:
        own = process.memory_info().rss
        total = own + sum(c.memory_info().rss for c in process.children(recursive=True))
    except psutil.Error:
        return 0, 0
    return own, total


def run_collect(workspace: Path, samples: int, workers: int | None) -> dict[str, float]:
    command = [
        sys.executable,
        "-m",
        "vlaa_data",
        "collect",
        "synthetic",
        "--limit",
        str(samples),
        "--seed",
        "0",
        "--json",
        "-w",
        str(workspace),
    ]
    if workers is not None:
        command += ["--workers", str(workers)]
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process = psutil.Process(child.pid)
    peak_own = peak_tree = 0
    while child.poll() is None:
        own, tree = _tree_rss(process)
        peak_own, peak_tree = max(peak_own, own), max(peak_tree, tree)
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    stdout, stderr = child.communicate()
    if child.returncode != 0:
        raise SystemExit(f"collect failed ({child.returncode}): {stderr.strip()}")
    report = json.loads(stdout)
    return {
        "seconds": seconds,
        "collected": report["collected"],
        "rejected": report["rejected"],
        "peak_rss_mb": peak_own / 2**20,
        "peak_tree_rss_mb": peak_tree / 2**20,
    }


def time_status(workspace: Path, repeats: int = 3) -> dict[str, float]:
    from vlaa_data.status import build_status
    from vlaa_data.workspace import Workspace

    in_process = []
    for _ in range(repeats):
        started = time.perf_counter()
        with Workspace.open(workspace, write=False) as ws:
            report = build_status(ws.store)
        in_process.append(time.perf_counter() - started)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "vlaa_data", "status", "--json", "-w", str(workspace)],
        check=True,
        capture_output=True,
    )
    cli_seconds = time.perf_counter() - started
    return {"status_s": min(in_process), "status_cli_s": cli_seconds, "samples": report.samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=None, help="image workers [settings]")
    parser.add_argument("--keep", action="store_true", help="keep the workspace afterwards")
    args = parser.parse_args()

    from vlaa_data.workspace import init_workspace

    root = Path(tempfile.mkdtemp(prefix="vlaa-bench-"))
    try:
        workspace = init_workspace(root / "ws")
        collect = run_collect(workspace, args.samples, args.workers)
        status = time_status(workspace)
        disk = sum(f.stat().st_size for f in (workspace / "images").rglob("*") if f.is_file())
        db = (workspace / "vlaa.duckdb").stat().st_size
        print(f"samples collected : {collect['collected']:,} (rejected {collect['rejected']:,})")
        print(f"collect wall time : {collect['seconds']:.1f} s")
        print(f"samples/s         : {collect['collected'] / collect['seconds']:,.0f}")
        print(
            f"peak RSS collect  : {collect['peak_rss_mb']:,.0f} MB "
            f"(with image workers: {collect['peak_tree_rss_mb']:,.0f} MB)"
        )
        print(
            f"status latency    : {status['status_s'] * 1000:,.0f} ms in-process, "
            f"{status['status_cli_s'] * 1000:,.0f} ms as `vlaa-data status --json`"
        )
        print(
            f"disk              : images {disk / 2**20:,.0f} MB, vlaa.duckdb {db / 2**20:,.0f} MB"
        )
    finally:
        if args.keep:
            print(f"workspace kept at {root / 'ws'}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
