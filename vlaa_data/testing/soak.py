"""A soak of the whole pipeline: ``vlaa-data run`` under injected faults and repeated SIGKILLs.

The scripted server answers each request with a text that depends only on the request (so a
retried or re-sent request gets the same answer), and on a request's first two arrivals may
instead answer 429 with Retry-After, 500, a slow reply, a dropped connection or malformed JSON;
a few requests always come back truncated. ``vlaa-data run`` runs in its own process group and
is killed with SIGKILL at random moments, then started again; a last run goes to the end.

The checks, against the workspace and against a fault-free run on the same seed:
every sample ends in exactly one final state (in a split, rejected with a reason, or failed
with a reason; none pending); no step has two done results for one sample; no request has two
paid (``ok``) replies in the ledger; and the export holds the fault-free export's rows, less
exactly the samples whose replies came back truncated or failed for good.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlaa_data.testing.server import Reply, Responder, ScriptedServer
from vlaa_data.workspace import Workspace, init_workspace

__all__ = ["SoakConfig", "SoakReport", "fault_responder", "run_soak"]

FAULTS = ("rate_limited", "server_error", "slow", "dropped", "malformed")
_TEXT_STEPS = ("caption", "distill", "rewrite", "verify")


@dataclass
class SoakConfig:
    samples: int = 500
    kills: int = 10
    seed: int = 0
    fault_rate: float = 0.3  # chance that a request's first (and second) arrival is a fault
    truncate_rate: float = 0.02  # requests whose reply is always cut at max_tokens
    kill_window_s: tuple[float, float] = (0.5, 6.0)  # a kill lands this long after a start


@dataclass
class SoakReport:
    samples: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    kills: int = 0
    runs: int = 0
    final_states: Counter[str] = field(default_factory=Counter)
    pending: list[str] = field(default_factory=list)
    duplicated_results: int = 0
    repaid_requests: int = 0
    export_rows: int = 0
    clean_export_rows: int = 0
    rows_differing: list[str] = field(default_factory=list)  # in both exports, not equal
    rows_unexplained: list[str] = field(default_factory=list)  # missing, and not failed
    # (sample, step) whose current result differs from the fault-free run's, the sample never
    # having failed there: the same answers must give the same results
    results_compared: int = 0
    results_differing: list[str] = field(default_factory=list)
    requests_received: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (
            self.pending
            or self.duplicated_results
            or self.repaid_requests
            or self.rows_differing
            or self.rows_unexplained
            or self.results_differing
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "faults_injected": dict(sorted(self.faults.items())),
            "kills": self.kills,
            "runs": self.runs,
            "final_states": dict(sorted(self.final_states.items())),
            "pending": len(self.pending),
            "duplicated_results": self.duplicated_results,
            "repaid_requests": self.repaid_requests,
            "export_rows": self.export_rows,
            "clean_export_rows": self.clean_export_rows,
            "rows_differing": len(self.rows_differing),
            "rows_unexplained": len(self.rows_unexplained),
            "results_compared": self.results_compared,
            "results_differing": len(self.results_differing),
            "requests_received": self.requests_received,
            "seconds": round(self.seconds, 1),
            "ok": self.ok,
        }


def _digest(request: dict) -> int:
    body = json.dumps(request.get("messages"), sort_keys=True).encode()
    return int.from_bytes(hashlib.sha256(body).digest()[:8], "big")


def fault_responder(
    seed: int, fault_rate: float, truncate_rate: float, injected: Counter[str]
) -> Responder:
    """Answers that depend only on the request's messages; faults on its first two arrivals
    with probability ``fault_rate``; always-truncated replies with ``truncate_rate``."""
    lock = threading.Lock()

    def respond(request: dict, attempt: int) -> Reply:
        digest = _digest(request)
        draw = random.Random(digest ^ seed)
        # Some counts right, some wrong, some with an aha moment: every split gets samples.
        aha = " Wait, let me check that again." if draw.random() < 0.3 else ""
        content = f"<think>Counting what the picture shows.{aha}</think>The answer is "
        content += f"{draw.randint(1, 6)}."
        truncated = draw.random() < truncate_rate
        fault = FAULTS[draw.randrange(len(FAULTS))] if attempt <= 2 else None
        if fault is not None and random.Random(f"{digest}:{attempt}").random() >= fault_rate:
            fault = None
        if fault is not None:
            with lock:
                injected[fault] += 1
        if fault == "rate_limited":
            return Reply.error(429, retry_after="0.05")
        if fault == "server_error":
            return Reply.error(500)
        if fault == "dropped":
            return Reply.drop()
        if fault == "malformed":
            return Reply.malformed()
        delay = 0.3 if fault == "slow" else 0.0
        if truncated:
            with lock:
                injected["truncated"] += 1
            return Reply.ok(content[:12], finish_reason="length", delay=delay)
        return Reply.ok(content, delay=delay)

    return respond


def _workspace(root: Path, config: SoakConfig) -> Path:
    workspace = init_workspace(root)
    with (workspace / "vlaa.toml").open("a", encoding="utf-8") as settings:
        settings.write(
            f'\n[[run.collect]]\nsource = "synthetic"\nlimit = {config.samples}\n'
            f"seed = {config.seed}\n"
        )
    return workspace


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    # Quick retries: the faults are transient, and the soak is about state, not patience.
    env.update(
        VLAA_LLM_BACKOFF_S="0.01",
        VLAA_LLM_MAX_RETRIES="6",
        VLAA_LLM_TIMEOUT_S="5",
        VLAA_COLLECT_WORKERS="1",
        VLAA_VERIFY_MATH_WORKERS="1",
    )
    return env


def _start(workspace: Path, url: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "vlaa_data", "run", "--base-url", url, "-w", str(workspace)]
    return subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=_environment(),
        start_new_session=True,  # its own process group: the kill takes its workers too
    )


def _run_to_end(workspace: Path, url: str, timeout_s: float = 600) -> None:
    process = _start(workspace, url)
    _, stderr = process.communicate(timeout=timeout_s)
    if process.returncode != 0:
        raise RuntimeError(f"run exited {process.returncode}: {stderr.decode()[-2000:]}")


def run_soak(root: Path, config: SoakConfig, log: Any = None) -> SoakReport:
    """Soak a workspace under ``root/faulty`` and compare it with ``root/clean``."""
    say = log or (lambda message: None)
    started = time.monotonic()
    report = SoakReport(samples=config.samples)
    chooser = random.Random(config.seed)

    clean = _workspace(root / "clean", config)
    with ScriptedServer(fault_responder(config.seed, 0.0, 0.0, Counter())) as server:
        _run_to_end(clean, server.url)
    say("fault-free run done")

    faulty = _workspace(root / "faulty", config)
    responder = fault_responder(config.seed, config.fault_rate, config.truncate_rate, report.faults)
    with ScriptedServer(responder) as server:
        while report.kills < config.kills:
            process = _start(faulty, server.url)
            report.runs += 1
            try:
                process.wait(timeout=chooser.uniform(*config.kill_window_s))
                say(f"run {report.runs} ended by itself ({process.returncode}) before its kill")
                if process.returncode == 0:
                    # It finished first: start over from scratch is not wanted, so the next
                    # runs (finding little to do) are killed sooner.
                    config = _shorter(config)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                report.kills += 1
                say(f"run {report.runs} killed")
        _run_to_end(faulty, server.url)
        report.runs += 1
        report.requests_received = len(server.requests)
    say("last run done")
    _check_states(faulty, report)
    _compare_exports(clean, faulty, report)
    report.seconds = time.monotonic() - started
    return report


def _shorter(config: SoakConfig) -> SoakConfig:
    low, high = config.kill_window_s
    return SoakConfig(**{**config.__dict__, "kill_window_s": (low / 2, max(high / 2, low))})


_FINAL_STATES = """
WITH place AS (
    SELECT sample_id, split, why FROM release_samples WHERE release = 'v1'
), stopped AS (
    SELECT sample_id, step, status, reason,
           row_number() OVER (
               PARTITION BY sample_id
               ORDER BY list_position(['caption', 'distill', 'rewrite', 'verify'], step)
           ) AS n
    FROM current_results
    WHERE step IN ('caption', 'distill', 'rewrite', 'verify') AND status <> 'done'
), finished AS (
    SELECT sample_id, count(*) AS steps FROM current_results
    WHERE step IN ('caption', 'distill', 'rewrite', 'verify') AND status = 'done'
    GROUP BY sample_id
)
SELECT s.id, p.split, p.why, st.step, st.status, st.reason, coalesce(f.steps, 0)
FROM samples s
LEFT JOIN place p ON p.sample_id = s.id
LEFT JOIN stopped st ON st.sample_id = s.id AND st.n = 1
LEFT JOIN finished f ON f.sample_id = s.id
ORDER BY s.id
"""


def _check_states(workspace: Path, report: SoakReport) -> None:
    with Workspace.open(workspace, write=False) as ws:
        con = ws.store.con
        for sample_id, split, why, step, status, reason, done in con.execute(
            _FINAL_STATES
        ).fetchall():
            if split in ("sft", "rl", "test"):
                report.final_states[f"split:{split}"] += 1
            elif step is not None and reason:
                state = "rejected" if status == "rejected" else "failed"
                report.final_states[f"{state}:{step}"] += 1
            elif split == "excluded" and done == len(_TEXT_STEPS):
                report.final_states[f"rejected:split:{why}"] += 1
            else:
                report.pending.append(sample_id)
        [(report.duplicated_results,)] = con.execute(
            "SELECT count(*) FROM (SELECT sample_id, step FROM results WHERE status = 'done' "
            "GROUP BY ALL HAVING count(*) > 1)"
        ).fetchall()
        [(report.repaid_requests,)] = con.execute(
            "SELECT count(*) FROM (SELECT key FROM llm_calls WHERE status = 'ok' "
            "GROUP BY key HAVING count(*) > 1)"
        ).fetchall()


def _export_rows(workspace: Path) -> dict[str, str]:
    import pyarrow.parquet as pq

    rows = {}
    for path in sorted((workspace / "releases" / "v1" / "hf" / "data").glob("*.parquet")):
        split = path.name.split("-", 1)[0]
        for row in pq.read_table(path).to_pylist():
            image = hashlib.sha256(row.pop("image")["bytes"]).hexdigest()
            rows[row["id"]] = json.dumps([split, image, row], sort_keys=True)
    return rows


_RESULTS = """
SELECT sample_id, step, status, reason, method, CAST(output AS VARCHAR) FROM current_results
WHERE step IN ('caption', 'distill', 'rewrite', 'verify')
"""


def _results(workspace: Path) -> dict[tuple[str, str], tuple]:
    with Workspace.open(workspace, write=False) as ws:
        rows = ws.store.con.execute(_RESULTS).fetchall()
    return {(row[0], row[1]): row[2:] for row in rows}


def _compare_exports(clean: Path, faulty: Path, report: SoakReport) -> None:
    expected, got = _export_rows(clean), _export_rows(faulty)
    report.clean_export_rows, report.export_rows = len(expected), len(got)
    clean_results, faulty_results = _results(clean), _results(faulty)
    stopped = {
        sample_id
        for (sample_id, _), (status, *_rest) in faulty_results.items()
        if status in ("failed", "truncated")
    }
    for key, result in faulty_results.items():
        if key[0] not in stopped:
            report.results_compared += 1
            if clean_results.get(key) != result:
                report.results_differing.append(f"{key[0]} {key[1]}")
    for sample_id, row in expected.items():
        if sample_id not in got:
            if sample_id not in stopped:
                report.rows_unexplained.append(sample_id)
        elif got[sample_id] != row:
            report.rows_differing.append(sample_id)
    report.rows_unexplained.extend(sorted(set(got) - set(expected)))
