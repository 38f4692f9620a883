"""When an LLM step cannot do its work it says so in one line and exits 1, leaving what it did
not send pending: an endpoint that is not there (checked before the first request, and given
up after a few connections refused in a row), requests that all failed, a budget of $0. A
step run before its parent says what to run first."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from tests.conftest import CliRun, query
from tests.llm.conftest import closed_url, marker, r1_reply, run_step
from tests.test_doctor import RecordingServer
from vlaa_data.testing.server import Reply, ScriptedServer

SECRET = "sk-vlaa-test-secret-7f3a9c"  # what llm_workspace sets VLAA_TEST_KEY to


def default_patience(root: Path) -> None:
    """The default timeout, retries and backoff instead of the fast ones of llm_workspace:
    against a closed port they cost a sample about a minute of retries."""
    config = root / "vlaa.toml"
    text = config.read_text(encoding="utf-8")
    text = text.replace("timeout_s = 0.5", "timeout_s = 600").replace("backoff_s = 0.02", "")
    config.write_text(text.replace("max_retries = 3", "max_retries = 6"), encoding="utf-8")


def results(root: Path, step: str) -> dict[str, str]:
    rows = query(root, "SELECT sample_id, status FROM current_results WHERE step = ?", [step])
    return dict(rows)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def test_a_closed_port_fails_at_once_and_a_rerun_does_every_sample(
    llm_workspace, cli: CliRun, server: ScriptedServer
) -> None:
    root = llm_workspace(256)
    default_patience(root)
    url = closed_url()

    started = time.monotonic()
    # Before the check it took 155 s: six retries per sample, then exit 0 with all failed.
    stopped = cli("distill", "-w", root, "--model", "test-r1", "--base-url", url, timeout=60)
    seconds = time.monotonic() - started

    assert stopped.returncode == 1, stopped.stdout + stopped.stderr
    [line] = error_lines(stopped.stderr)
    assert line.startswith(f"error: endpoint {url}: unreachable: ")
    assert line.endswith("256 samples left pending: run again once it answers")
    assert seconds < 30
    assert results(root, "distill") == {}  # pending, not failed
    assert query(root, "SELECT status FROM runs WHERE command LIKE '%distill%'") == [("stopped",)]

    done = cli("distill", "-w", root, "--model", "test-r1")
    assert done.returncode == 0, done.stderr
    assert set(results(root, "distill").values()) == {"done"} and server.count == 256


def test_a_server_that_goes_away_mid_run_is_given_up_after_a_few_refusals(
    llm_workspace, server: ScriptedServer
) -> None:
    root = llm_workspace(256)
    default_patience(root)
    stopping = threading.Thread(target=server.stop)

    def die(request: dict, attempt: int) -> Reply:
        if not stopping.is_alive() and stopping.ident is None:
            stopping.start()  # from here on, connections are refused
        return Reply.drop()

    server.responder = die
    started = time.monotonic()
    report = run_step(root, "distill", model="test-r1")
    seconds = time.monotonic() - started
    stopping.join()

    assert report.stopped == "unreachable"
    line = report.stop_line()
    assert line is not None and line.startswith(f"endpoint {server.url} is unreachable: ")
    assert "connection attempts in a row failed, none answered" in line
    assert report.left_pending == 256 and results(root, "distill") == {}
    assert report.progress.requests == 0
    assert seconds < 30  # six retries each, with backoff, would take minutes


def test_each_step_checks_its_endpoint_before_the_first_request(
    llm_workspace, cli: CliRun, server: ScriptedServer
) -> None:
    root = llm_workspace(2, caption=False)
    url = closed_url()
    result = cli("caption", "-w", root, "--model", "test-vlm", "--base-url", url, "--json")
    assert result.returncode == 1
    [line] = error_lines(result.stderr)
    assert line.startswith(f"error: endpoint {url}: unreachable: ")
    report = json.loads(result.stdout)
    assert report["stopped"] == "unreachable" and report["left_pending"] == 2
    assert report["stop_detail"].startswith(f"endpoint {url}: unreachable: ")
    assert server.count == 0 and results(root, "caption") == {}


def test_a_refused_key_stops_the_step_before_it_sends_without_showing_the_key(
    llm_workspace,
) -> None:
    root = llm_workspace(2)
    with RecordingServer() as refusing:
        refusing.refuse = True
        report = run_step(root, "distill", model="test-r1", base_url=refusing.url)
    assert report.stopped == "unreachable" and refusing.count == 0
    assert refusing.models_auth == [f"Bearer {SECRET}"]
    line = report.stop_line()
    assert line == (
        f"endpoint {refusing.url}: HTTP 401: it refuses the key in VLAA_TEST_KEY; "
        "check VLAA_TEST_KEY; 2 samples left pending: run again once it answers"
    )


def test_a_step_whose_requests_all_fail_exits_1_and_one_partly_failing_exits_0(
    llm_workspace, cli: CliRun, server: ScriptedServer
) -> None:
    root = llm_workspace(3)
    server.responder = lambda request, attempt: Reply.error(401, message="Incorrect API key")

    failed = cli("distill", "-w", root, "--model", "test-r1", "--json")

    assert failed.returncode == 1
    assert error_lines(failed.stderr) == [
        "error: all 3 requests to test-r1 failed (3 auth_error; first: 401 Incorrect API key); "
        "the samples are recorded failed and a rerun retries them"
    ]
    assert json.loads(failed.stdout)["failed_requests"] == {"auth_error": 3}
    assert set(results(root, "distill").values()) == {"failed"}

    def one_bad(request: dict, attempt: int) -> Reply:
        if marker(request) == 0:
            return Reply.error(400, message="bad image")
        return r1_reply(request, attempt)

    server.responder = one_bad
    partial = cli("distill", "-w", root, "--model", "test-r1")
    assert partial.returncode == 0, partial.stderr
    assert "failed:bad_request" in partial.stdout and "done" in partial.stdout
    assert results(root, "distill") == {
        "toy/s000": "failed",
        "toy/s001": "done",
        "toy/s002": "done",
    }


def test_a_budget_of_zero_sends_nothing_even_to_a_free_endpoint(
    llm_workspace, cli: CliRun, server: ScriptedServer
) -> None:
    root = llm_workspace(3, price=0.0)
    result = cli("distill", "-w", root, "--model", "test-r1", "--budget-usd", "0")
    assert result.returncode == 1
    assert error_lines(result.stderr) == [
        "error: budget reached: $0.0000 spent of $0.00 (in-flight estimate included); "
        "3 samples left pending; rerun with a higher --budget-usd"
    ]
    assert server.count == 0 and results(root, "distill") == {}


def test_a_step_run_before_its_parent_says_what_to_run_first(
    llm_workspace, cli: CliRun, server: ScriptedServer
) -> None:
    root = llm_workspace(3, caption=False)

    distill = cli("distill", "-w", root, "--model", "test-r1", "--json")
    rewrite = cli("rewrite", "-w", root, "--model", "test-vlm")
    verify = cli("verify", "-w", root, "--rules-only")

    for result in (distill, rewrite, verify):
        assert result.returncode == 0, result.stderr
    assert "note: 3 samples wait for caption: run caption first" in distill.stderr
    assert json.loads(distill.stdout)["waiting"] == {"caption": 3}
    assert "note: 3 samples wait for distill: run distill first" in rewrite.stderr
    assert "note: 3 samples wait for rewrite: run rewrite first" in verify.stderr
    assert server.count == 0
    run_step(root, "caption", model="test-vlm")
    again = cli("distill", "-w", root, "--model", "test-r1")
    assert again.returncode == 0 and "wait for" not in again.stderr
