"""The LLM steps as users run them: subprocesses, kill -9, SIGTERM, status while running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import query
from tests.llm.conftest import marker
from vlaa_data.testing.server import ScriptedServer


def start_distill(root: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "VLAA_WORKSPACE"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vlaa_data",
            "distill",
            "-w",
            str(root),
            "--model",
            "test-r1",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def done_per_sample(root: Path) -> dict[str, int]:
    rows = query(
        root,
        "SELECT sample_id, count(*) FILTER (WHERE status = 'done') FROM results "
        "WHERE step = 'distill' GROUP BY 1",
    )
    return dict(rows)


def test_missing_key_is_one_line_naming_the_variable(llm_workspace, cli) -> None:
    root = llm_workspace(2)
    result = cli("distill", "-w", root, "--model", "test-r1", env={"VLAA_TEST_KEY": ""})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: VLAA_TEST_KEY is not set: export VLAA_TEST_KEY=... (the API key for test-r1), "
        "or pass --api-key-env VAR to read it from another variable"
    ]


def test_json_report_and_budget_exit(llm_workspace, cli, server: ScriptedServer) -> None:
    root = llm_workspace(6, price=1000.0)
    result = cli("distill", "-w", root, "--model", "test-r1", "--limit", "2", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["outcomes"] == {"done": 2} and report["requests"] == 2
    assert report["cost_usd"] > 0
    result = cli("distill", "-w", root, "--model", "test-r1", "--budget-usd", "0.6")
    assert result.returncode == 1
    assert "error: budget reached" in result.stderr and "left pending" in result.stderr


def test_dry_run_through_the_cli_needs_no_key(llm_workspace, cli, server: ScriptedServer) -> None:
    root = llm_workspace(3)
    result = cli(
        "distill", "-w", root, "--model", "test-r1", "--dry-run", env={"VLAA_TEST_KEY": ""}
    )
    assert result.returncode == 0, result.stderr
    assert "requests to send" in result.stdout and "Question: Q0" in result.stdout
    assert server.count == 0


def test_kill_9_mid_run_loses_nothing_and_pays_at_most_the_requests_in_flight(
    llm_workspace, server: ScriptedServer
) -> None:
    samples, concurrency = 40, 4
    root = llm_workspace(samples)
    server.latency = 0.25
    process = start_distill(root, "--concurrency", str(concurrency))
    deadline = time.monotonic() + 30
    while server.count < 12 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.kill()  # SIGKILL: no cleanup at all
    process.wait(timeout=10)
    before = server.count
    assert 0 < before < samples
    server.latency = 0.0
    rerun = start_distill(root, "--concurrency", str(concurrency))
    _, stderr = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, stderr
    assert done_per_sample(root) == {f"toy/s{i:03d}": 1 for i in range(samples)}
    written = query(root, "SELECT count(*) FROM llm_calls")
    assert server.count <= samples + concurrency, (before, written, server.count)
    # every request the server answered before the kill and that was written is not re-sent
    keys = query(root, "SELECT count(*), count(DISTINCT key) FROM llm_calls")
    assert keys[0][0] == keys[0][1]
    statuses = query(root, "SELECT status FROM runs WHERE command LIKE '%distill%' ORDER BY id")
    assert statuses == [("interrupted",), ("finished",)]


def test_status_works_while_distill_runs(llm_workspace, cli, server: ScriptedServer) -> None:
    root = llm_workspace(30)
    server.latency = 0.2
    process = start_distill(root, "--concurrency", "2")
    try:
        while server.count < 4:
            time.sleep(0.05)
        result = cli("status", "-w", root, "--json")
        assert result.returncode == 0, result.stderr
        distill = json.loads(result.stdout)["steps"]["distill"]
        assert distill["done"] + distill["pending"] == 30
        assert process.poll() is None  # the run was still going, and went on
    finally:
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert sum(done_per_sample(root).values()) == 30


def test_sigterm_stops_cleanly_and_keeps_what_finished(
    llm_workspace, server: ScriptedServer
) -> None:
    root = llm_workspace(40)
    server.latency = 0.2
    process = start_distill(root, "--concurrency", "2")
    while server.count < 6:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr, (stdout, stderr)
    finished = sum(done_per_sample(root).values())
    assert finished >= 4
    assert query(root, "SELECT status FROM runs WHERE command LIKE '%distill%'") == [
        ("interrupted",)
    ]
    seen = {marker(body) for body in server.requests}
    assert finished <= len(seen)
