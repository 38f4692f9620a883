"""``vlaa-data run``: every step in order against the scripted server, resumable, and a stop
with one line when the LLM steps have no endpoint."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CliRun
from vlaa_data.errors import VlaaError
from vlaa_data.pipeline import RunOptions, run_pipeline, select_steps
from vlaa_data.release.export import export_release
from vlaa_data.steps.registry import run_steps
from vlaa_data.testing.server import ScriptedServer, default_responder
from vlaa_data.workspace import Workspace

_COLLECT = """
[[run.collect]]
source = "synthetic"
limit = 24
seed = 1
"""


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer(default_responder) as running:
        yield running


@pytest.fixture
def run_workspace(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace whose vlaa.toml has run collect 24 synthetic samples; no API keys set."""
    with (workspace / "vlaa.toml").open("a", encoding="utf-8") as config:
        config.write(_COLLECT)
    for key in ("OPENAI_API_KEY", "DEEPSEEK_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    return workspace


def _run(workspace: Path, **options) -> dict:
    with Workspace.open(workspace, write=True) as ws:
        return run_pipeline(ws, RunOptions(**options)).to_dict()


def test_selecting_steps() -> None:
    assert select_steps() == run_steps()
    assert select_steps(start="verify") == ("verify", "aha", "split", "export")
    assert select_steps(start="caption", end="rewrite") == ("caption", "distill", "rewrite")
    assert select_steps(["export", "collect"]) == ("collect", "export")  # pipeline order
    with pytest.raises(VlaaError, match=r"unknown step 'captions'.*collect, caption"):
        select_steps(["captions"])
    with pytest.raises(VlaaError, match="--from split comes after --to verify"):
        select_steps(start="split", end="verify")


def test_a_run_builds_the_release_and_a_second_run_asks_for_nothing(
    run_workspace: Path, server: ScriptedServer
) -> None:
    first = _run(run_workspace, base_url=server.url)
    assert first["stopped"] is None
    steps = first["steps"]
    assert list(steps) == list(run_steps())
    assert steps["collect"]["done"] == 24
    for step in ("caption", "distill"):
        assert steps[step]["done"] == 24 and steps[step]["pending"] == 0
    sent = len(server.requests)
    # caption and distill each call once per sample (synthetic questions are not text-only),
    # the judge once per open-ended sample; rewrite needs no call for the stand-in's text.
    assert (
        sent
        == steps["caption"]["requests"]
        + steps["distill"]["requests"]
        + (steps["verify"]["requests"])
    )
    assert steps["caption"]["requests"] == steps["distill"]["requests"] == 24
    verify = steps["verify"]
    assert verify["done"] + verify["rejected"] == 24 and verify["done"] > 0
    export = Path(first["export"])
    assert export == run_workspace / "releases" / "v1" / "hf"
    assert sorted(p.name for p in (export / "data").glob("*.parquet"))
    files = {p: p.read_bytes() for p in export.rglob("*") if p.is_file()}
    # the run's export is the one `vlaa-data export` writes, its full dataset card included
    with Workspace.open(run_workspace, write=True) as ws:
        export_release(ws, "v1", "hf", run_workspace / "by-hand")
    by_hand = run_workspace / "by-hand"
    assert {p.relative_to(export): data for p, data in files.items()} == {
        p.relative_to(by_hand): p.read_bytes() for p in by_hand.rglob("*") if p.is_file()
    }
    card = (export / "README.md").read_text(encoding="utf-8")
    assert "## Citation" in card and "license: other" in card
    assert (export / "assets" / "sources.png").is_file()

    second = _run(run_workspace, base_url=server.url)
    assert len(server.requests) == sent  # nothing sent again: no request is paid twice
    assert second["steps"]["collect"]["done"] == 24  # collecting again adds nothing
    assert all(outcome["requests"] == 0 for outcome in second["steps"].values())
    assert {p: p.read_bytes() for p in export.rglob("*") if p.is_file()} == files


def test_without_keys_the_run_stops_after_collect_naming_every_key(run_workspace: Path) -> None:
    report = _run(run_workspace)
    assert list(report["steps"]) == ["collect"] and report["steps"]["collect"]["done"] == 24
    line = report["stopped"]
    assert "\n" not in line
    assert "OPENAI_API_KEY (caption: gpt-4o, rewrite: gpt-3.5-turbo)" in line
    assert "DEEPSEEK_API_KEY (distill: deepseek-r1)" in line
    assert "--base-url" in line


def test_only_the_missing_key_is_named(
    run_workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-sent")
    report = _run(run_workspace, steps=("caption", "distill"))
    assert report["steps"] == {}  # nothing ran: the check comes before the first LLM step
    assert "DEEPSEEK_API_KEY (distill: deepseek-r1)" in report["stopped"]
    assert "OPENAI_API_KEY" not in report["stopped"]


def test_a_budget_stop_is_resumed_without_paying_twice(
    run_workspace: Path, server: ScriptedServer
) -> None:
    """The gpt-4o preset's price makes 24 captions cost about $0.02: a $0.01 budget stops
    caption part way; the run again with room finishes, and no sample was sent twice."""
    stopped = _run(
        run_workspace, base_url=server.url, budget_usd=0.01, steps=("collect", "caption")
    )
    assert stopped["stopped"].startswith("caption: budget reached")
    first = stopped["steps"]["caption"]
    assert 0 < first["done"] < 24 and first["pending"] == 24 - first["done"]
    finished = _run(run_workspace, base_url=server.url, steps=("collect", "caption"))
    assert finished["stopped"] is None and finished["steps"]["caption"]["done"] == 24
    images = [json.dumps(request["messages"], sort_keys=True) for request in server.requests]
    assert len(images) == len(set(images)) == 24


def test_an_llm_step_that_does_nothing_stops_the_run_as_its_command_would_exit_1(
    run_workspace: Path, server: ScriptedServer
) -> None:
    """An endpoint that is not there, requests that all fail, a budget of $0: the run stops
    at caption with the line the caption command would print, the samples left pending."""
    from tests.llm.conftest import closed_url
    from vlaa_data.testing.server import Reply

    url = closed_url()
    unreachable = _run(run_workspace, base_url=url, steps=("collect", "caption", "distill"))
    assert unreachable["stopped"].startswith(f"caption: endpoint {url}: unreachable: ")
    assert unreachable["stopped"].endswith("24 samples left pending: run again once it answers")
    assert list(unreachable["steps"]) == ["collect", "caption"]
    assert unreachable["steps"]["caption"]["pending"] == 24

    broke = _run(run_workspace, base_url=server.url, budget_usd=0, steps=("caption",))
    assert broke["stopped"].startswith("caption: budget reached: $0.0000 spent of $0.00")
    assert not server.requests

    server.responder = lambda request, attempt: Reply.error(400, message="unknown model")
    failing = _run(run_workspace, base_url=server.url, steps=("caption", "distill"))
    assert failing["stopped"].startswith(
        "caption: all 24 requests to gpt-4o failed (24 bad_request"
    )
    assert list(failing["steps"]) == ["caption"] and failing["steps"]["caption"]["failed"] == 24


def test_a_failing_step_stops_the_run_with_its_reason(
    run_workspace: Path, server: ScriptedServer
) -> None:
    with (run_workspace / "vlaa.toml").open("a", encoding="utf-8") as config:
        config.write('\n[[run.collect]]\nsource = "arxivqa"\npath = "/nonexistent/arxivqa.jsonl"\n')
    report = _run(run_workspace, base_url=server.url)
    assert report["stopped"].startswith("collect: ") and "nonexistent" in report["stopped"]
    assert list(report["steps"]) == ["collect"] and not server.requests


def test_the_command_prints_a_report_and_exits_1_with_one_line(
    cli: CliRun, run_workspace: Path, server: ScriptedServer
) -> None:
    stopped = cli("run", "-w", run_workspace)
    assert stopped.returncode == 1
    assert [line for line in stopped.stderr.splitlines() if line.strip()] == [
        stopped.stderr.strip()
    ]
    assert stopped.stderr.startswith("error: the LLM steps need an endpoint: set ")
    done = cli("run", "--base-url", server.url, "--to", "verify", "--json", "-w", run_workspace)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert list(report["steps"]) == ["collect", "caption", "distill", "rewrite", "verify"]
    assert report["export"] is None
    table = cli("run", "--base-url", server.url, "--from", "aha", "-w", run_workspace)
    assert table.returncode == 0, table.stderr
    assert "split: release v1:" in table.stdout and "releases/v1/hf" in table.stdout


def test_a_release_without_samples_is_not_exported_and_the_run_ends_well(
    run_workspace: Path,
) -> None:
    """Every answer wrong: verify rejects all, split makes no release (the name stays free),
    and split and export say so instead of failing the run."""
    from vlaa_data.testing.server import Reply

    def wrong(request: dict, attempt: int) -> Reply:
        return Reply.ok("<think>A guess.</think>The answer is 987654.")

    with ScriptedServer(wrong) as server:
        report = _run(run_workspace, base_url=server.url)
    assert report["stopped"] is None and report["export"] is None
    assert report["steps"]["verify"]["done"] == 0
    assert report["steps"]["split"]["note"].startswith("no sample is verified correct")
    assert report["steps"]["export"]["note"] == "no release 'v1' to export: the split made none"
    with Workspace.open(run_workspace, write=False) as ws:
        assert ws.store.release_names() == []
