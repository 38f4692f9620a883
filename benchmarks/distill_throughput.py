"""Distill throughput against a scripted endpoint: vlaa-data's LLM runner vs a plain SDK loop.

    python benchmarks/distill_throughput.py                      # 2000 samples, C = 64,256,1024
    python benchmarks/distill_throughput.py --concurrency 256 --profile 256

Starts ``python -m vlaa_data.testing.server`` as its own process (every reply comes after
--latency L seconds; the server has no concurrency limit), collects N synthetic samples into a
workspace and captions them there (setup, not timed). Then, for each concurrency C:

- ours: ``run_llm_step(ws, "distill")`` with ``redo`` and ``no_cache``, so every sample is sent
  and every reply is written to DuckDB; wall time of the step, requests/s against the ideal
  C/L, and process CPU ms per request (``time.process_time``, the database thread included);
- baseline: what a user would write instead, ``openai.AsyncOpenAI`` + ``asyncio.Semaphore(C)``
  over the same prompts (the ``request`` column of our ``llm_calls`` rows), replies kept in
  memory, nothing persisted.

A warm-cache rerun (``redo`` without ``no_cache``) must send no request. The server's CPU use
(psutil, mean and peak of 0.5 s windows) is printed too: client and server share the machine.
``--profile C`` adds a cProfile of one distill run at C (event-loop thread only).

Goal: at C = 256, ours >= 0.90 of C/L and >= 1.2x the baseline's requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import math
import pstats
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import psutil

from vlaa_data.sources import SourceOptions, open_source
from vlaa_data.steps.collect import collect
from vlaa_data.steps.llm_runner import run_llm_step
from vlaa_data.steps.llm_step import LlmOptions, LlmReport
from vlaa_data.workspace import Workspace, init_workspace

GOAL_CONCURRENCY = 256
GOAL_OF_IDEAL = 0.90
GOAL_OVER_BASELINE = 1.2
VLM, R1 = "bench-vlm", "bench-r1"

# Everything after this line in vlaa.toml is ours, rewritten on each run (the port changes).
_PRESETS_MARK = "# presets of benchmarks/distill_throughput.py\n"
_PRESETS = """
[presets.bench-vlm]
base_url = "{url}"
model = "scripted-vlm"
vision = true
params = {{ max_tokens = 1024 }}

[presets.bench-r1]
base_url = "{url}"
model = "scripted-r1"
reasoning = "field"
params = {{ max_tokens = 4096 }}
"""


@dataclass
class Measure:
    """One timed pass: requests answered, wall and CPU seconds, the server's CPU use."""

    requests: int
    failed: int
    wall_s: float
    cpu_s: float
    server_cpu_mean: float = 0.0
    server_cpu_peak: float = 0.0
    run_id: str | None = None
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return self.requests / self.wall_s if self.wall_s else 0.0

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * self.cpu_s / self.requests if self.requests else 0.0


@dataclass
class Row:
    """One concurrency: its ideal C/L, the best ratio N requests allow, and both passes."""

    concurrency: int
    ideal: float
    best: float  # N requests in ceil(N/C) waves of L seconds: N / (ceil(N/C) * C) of C/L
    ours: Measure
    baseline: Measure | None = None


class ServerCpu:
    """Samples a process's CPU use (percent of one core) in 0.5 s windows while active."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)

    @contextmanager
    def watch(self, into: Measure) -> Iterator[None]:
        samples: list[float] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.5):
                samples.append(self.process.cpu_percent(None))

        before = sum(self.process.cpu_times()[:2])
        self.process.cpu_percent(None)
        started = time.perf_counter()
        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            wall = time.perf_counter() - started
            used = sum(self.process.cpu_times()[:2]) - before
            into.server_cpu_mean = 100 * used / wall if wall else 0.0
            into.server_cpu_peak = max(samples, default=into.server_cpu_mean)


def start_server(latency: float) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "vlaa_data.testing.server", "--port", "0"]
    command += ["--latency", str(latency), "--reasoning", "field"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    line = server.stdout.readline()
    if not line.startswith("listening on "):
        stop_server(server)
        raise SystemExit(f"the scripted server did not start (printed {line!r})")
    return server, line.removeprefix("listening on ").strip()


def stop_server(server: subprocess.Popen[str]) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def build_workspace(root: Path, samples: int, url: str) -> tuple[int, float]:
    """Collect ``samples`` synthetic samples, point the presets at ``url``, caption them.

    Returns the number of samples distill will see and the setup's seconds.
    """
    started = time.perf_counter()
    root = init_workspace(root)
    with Workspace.open(root, write=True) as ws:
        source = open_source("synthetic", None, SourceOptions(limit=samples, seed=0))
        collect(ws, source, name="synthetic")
    config = root / "vlaa.toml"
    kept = config.read_text(encoding="utf-8").split(_PRESETS_MARK)[0]
    config.write_text(kept + _PRESETS_MARK + _PRESETS.format(url=url), encoding="utf-8")
    with Workspace.open(root, write=True) as ws:
        report = run_llm_step(ws, "caption", LlmOptions(model=VLM, concurrency=1024))
        if report.progress.failed:
            raise SystemExit(f"caption failed for {report.progress.failed} samples")
        ready = ws.store.query("SELECT count(*) FROM samples").rows[0][0]
    return ready, time.perf_counter() - started


def time_distill(root: Path, cpu: ServerCpu, concurrency: int, *, no_cache: bool) -> Measure:
    options = LlmOptions(model=R1, concurrency=concurrency, redo=True, no_cache=no_cache)
    with Workspace.open(root, write=True) as ws:
        report, measure = _timed(cpu, lambda: run_llm_step(ws, "distill", options))
    measure.run_id = report.run_id
    return measure


def _timed(cpu: ServerCpu, run: Callable[[], LlmReport]) -> tuple[LlmReport, Measure]:
    measure = Measure(0, 0, 0.0, 0.0)
    with cpu.watch(measure):
        started, cpu_started = time.perf_counter(), time.process_time()
        report = run()
        measure.wall_s = time.perf_counter() - started
        measure.cpu_s = time.process_time() - cpu_started
    measure.requests = report.progress.requests
    measure.failed = report.progress.failed
    return report, measure


def load_prompts(root: Path, run_id: str) -> list[dict[str, Any]]:
    """The requests one distill run sent, as stored in ``llm_calls`` (model, messages, params)."""
    with Workspace.open(root, write=False) as ws:
        rows = ws.store.query(
            "SELECT request FROM llm_calls WHERE step = 'distill' AND run_id = ?", [run_id]
        ).rows
    return [json.loads(request) for (request,) in rows]


def time_baseline(
    url: str, prompts: list[dict[str, Any]], cpu: ServerCpu, concurrency: int
) -> Measure:
    async def run_all() -> list[Any]:
        client = openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=0)
        gate = asyncio.Semaphore(concurrency)

        async def one(request: dict[str, Any]) -> Any:
            async with gate:
                return await client.chat.completions.create(
                    model=request["model"], messages=request["messages"], **request["params"]
                )

        try:
            return await asyncio.gather(*(one(p) for p in prompts), return_exceptions=True)
        finally:
            await client.close()

    measure = Measure(0, 0, 0.0, 0.0)
    with cpu.watch(measure):
        started, cpu_started = time.perf_counter(), time.process_time()
        replies = asyncio.run(run_all())
        measure.wall_s = time.perf_counter() - started
        measure.cpu_s = time.process_time() - cpu_started
    measure.errors = Counter(type(r).__name__ for r in replies if isinstance(r, BaseException))
    measure.failed = sum(measure.errors.values())
    measure.requests = len(replies) - measure.failed
    return measure


def profile_distill(root: Path, concurrency: int, top: int = 30) -> None:
    """cProfile one distill run (the event-loop thread; the database thread is not seen)."""
    options = LlmOptions(model=R1, concurrency=concurrency, redo=True, no_cache=True)
    profiler = cProfile.Profile()
    with Workspace.open(root, write=True) as ws:
        profiler.enable()
        report = run_llm_step(ws, "distill", options)
        profiler.disable()
    requests = max(report.progress.requests, 1)
    print(f"\ncProfile of one distill run at C={concurrency}: {requests} requests")
    stats = pstats.Stats(profiler).sort_stats("tottime")
    stats.print_stats(top)
    rows = []
    entries = stats.stats  # type: ignore[attr-defined]  # pstats keeps its table untyped
    for (filename, line, function), (_, calls, tottime, cumtime, _) in entries.items():
        if "vlaa_data" in filename:
            name = f"{filename.split('vlaa_data/')[-1]}:{line}({function})"
            rows.append((cumtime, tottime, calls, name))
    print("vlaa_data functions by cumulative time, per request:")
    print(f"{'cum us/req':>11} {'own us/req':>11} {'calls/req':>10}  function")
    for cumtime, tottime, calls, name in sorted(rows, reverse=True)[:top]:
        print(
            f"{1e6 * cumtime / requests:>11.1f} {1e6 * tottime / requests:>11.1f} "
            f"{calls / requests:>10.2f}  {name}"
        )


def print_pass(label: str, measure: Measure, ideal: float) -> None:
    failed = f", {measure.failed} failed" if measure.failed else ""
    print(
        f"  {label:<9} {measure.requests:>6} requests{failed} in {measure.wall_s:6.2f} s = "
        f"{measure.rate:7.1f} req/s ({measure.rate / ideal:.3f} of C/L), "
        f"CPU {measure.cpu_ms_per_request:.2f} ms/req ({100 * measure.cpu_s / measure.wall_s:.0f}%)"
        f", server CPU {measure.server_cpu_mean:.0f}% (peak {measure.server_cpu_peak:.0f}%)"
    )
    if measure.errors:
        kinds = ", ".join(f"{n} {kind}" for kind, n in measure.errors.most_common())
        print(f"  {'':<9} errors: {kinds}")


def print_summary(rows: list[Row], latency: float) -> None:
    print(f"\nSummary (L = {latency:g} s; CPU = this process, ms per request; % of one core)")
    header = (
        f"{'C':>5} {'C/L':>6} {'best':>5} | "
        f"{'ours r/s':>8} {'ratio':>6} {'CPU ms':>6} {'srv%':>5} | "
        f"{'base r/s':>8} {'ratio':>6} {'CPU ms':>6} {'srv%':>5} | {'ours/base':>9}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        ours, base = row.ours, row.baseline
        line = (
            f"{row.concurrency:>5} {row.ideal:>6.0f} {row.best:>5.3f} | {ours.rate:>8.1f} "
            f"{ours.rate / row.ideal:>6.3f} {ours.cpu_ms_per_request:>6.2f} "
            f"{ours.server_cpu_mean:>5.0f} | "
        )
        if base is not None:
            line += (
                f"{base.rate:>8.1f} {base.rate / row.ideal:>6.3f} "
                f"{base.cpu_ms_per_request:>6.2f} {base.server_cpu_mean:>5.0f} | "
                f"{ours.rate / base.rate:>8.2f}x"
            )
        print(line)
    print("best: the most of C/L that N requests in ceil(N/C) waves of L seconds can reach")
    goal = next((r for r in rows if r.concurrency == GOAL_CONCURRENCY), None)
    if goal is None:
        print(f"goal: not measured (needs C={GOAL_CONCURRENCY} in --concurrency)")
        return
    checks = [("of C/L", goal.ours.rate / goal.ideal, GOAL_OF_IDEAL)]
    if goal.baseline is not None:
        checks.append(("x the baseline", goal.ours.rate / goal.baseline.rate, GOAL_OVER_BASELINE))
    for text, value, target in checks:
        verdict = "met" if value >= target else "NOT met"
        print(f"goal at C={GOAL_CONCURRENCY}: {value:.3f} {text} (>= {target:g}): {verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=1.0, help="server seconds per reply")
    parser.add_argument("--concurrency", default="64,256,1024", help="comma-separated C values")
    parser.add_argument("--workspace", type=Path, help="reuse/keep this workspace (default: temp)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the openai SDK loop")
    parser.add_argument("--profile", type=int, metavar="C", help="also cProfile a run at C")
    args = parser.parse_args()
    concurrencies = [int(c) for c in args.concurrency.split(",") if c.strip()]

    if args.workspace:
        scratch, root = None, args.workspace.resolve()
    else:
        scratch = Path(tempfile.mkdtemp(prefix="vlaa-distill-bench-"))
        root = scratch / "ws"
    server, url = start_server(args.latency)
    try:
        cpu = ServerCpu(server.pid)
        print(f"server {url} (PID {server.pid}), latency {args.latency:g} s; workspace {root}")
        samples, setup_s = build_workspace(root, args.samples, url)
        print(f"setup: {samples} samples collected and captioned in {setup_s:.1f} s")

        rows: list[Row] = []
        for concurrency in concurrencies:
            ideal = concurrency / args.latency
            print(f"\nC={concurrency} (ideal C/L = {ideal:g} req/s)")
            ours = time_distill(root, cpu, concurrency, no_cache=True)
            print_pass("ours", ours, ideal)
            best = samples / (math.ceil(samples / concurrency) * concurrency)
            row = Row(concurrency, ideal, best, ours)
            if not args.no_baseline:
                assert ours.run_id is not None
                prompts = load_prompts(root, ours.run_id)
                row.baseline = time_baseline(url, prompts, cpu, concurrency)
                print_pass("baseline", row.baseline, ideal)
                print(f"  ours/baseline: {ours.rate / row.baseline.rate:.2f}x")
            rows.append(row)

        warm = time_distill(root, cpu, max(concurrencies), no_cache=False)
        cache_ok = warm.requests == 0
        print(
            f"\nwarm-cache rerun (redo, cache on): {warm.requests} requests sent "
            f"({'ok' if cache_ok else 'FAIL: expected 0'}), {warm.wall_s:.2f} s wall, "
            f"{warm.cpu_s:.2f} s CPU"
        )
        print_summary(rows, args.latency)
        if max(concurrencies) > 1000 and not args.no_baseline:
            print("note: the openai SDK's default pool holds at most 1000 connections")
        if args.profile:
            profile_distill(root, args.profile)
        return 0 if cache_ok else 1
    finally:
        stop_server(server)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
