"""caption and distill with an in-process model: the same results table and cache as HTTP."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import query
from tests.llm.conftest import run_step
from vlaa_data.sources import SourceOptions, open_source
from vlaa_data.steps.collect import collect
from vlaa_data.workspace import Workspace


def test_transformers_backend_runs_caption_with_the_same_cache_and_ledger(
    workspace: Path, tiny_vlm: Path
) -> None:
    with Workspace.open(workspace, write=True) as ws:
        ws.settings.collect.workers = 1
        collect(ws, open_source("synthetic", None, SourceOptions(limit=3, seed=1)), name="syn")
    common = {"backend": "transformers", "model": str(tiny_vlm)}
    report = run_step(workspace, "caption", max_tokens=6, **common)
    # a random model never closes its reply within 6 tokens: truncated, with the text kept
    assert report.outcomes == {"truncated:length": 3}
    assert report.progress.requests == 3 and report.progress.tokens_out == 18
    rows = query(workspace, "SELECT status, output FROM current_results WHERE step = 'caption'")
    assert all(status == "truncated" and json.loads(out)["caption"] for status, out in rows)
    ledger = query(
        workspace, "SELECT DISTINCT backend, status, tokens_in > 0, cost_usd FROM llm_calls"
    )
    assert ledger == [("transformers", "ok", True, 0.0)]
    # truncated captions are retried only when asked; a larger budget is a new request
    again = run_step(workspace, "caption", max_tokens=8, retry_truncated=True, **common)
    assert again.progress.requests == 3
    # the cache serves a redo of the same requests: no generation at all
    redo = run_step(workspace, "caption", max_tokens=8, redo=True, **common)
    assert redo.progress.requests == 0 and redo.progress.cached == 3
    # nothing is done, so distill has nothing ready
    assert run_step(workspace, "distill", max_tokens=6, **common).selected == 0


def test_transformers_backend_distills_text(workspace: Path, tiny_vlm: Path, cli) -> None:
    with Workspace.open(workspace, write=True) as ws:
        ws.settings.collect.workers = 1
        collect(ws, open_source("synthetic", None, SourceOptions(limit=2, seed=2)), name="syn")
    common = ["--backend", "transformers", "--model", str(tiny_vlm)]
    rows = query(workspace, "SELECT id FROM samples")
    # give the samples captions the way an import would, then distill through the CLI
    with Workspace.open(workspace, write=True) as ws:
        ws.store.con.execute(
            "INSERT INTO results (id, sample_id, step, attempt, status, output, method, run_id) "
            "SELECT row_number() OVER (), id, 'caption', 1, 'done', "
            "'{\"caption\": \"Three red cubes.\"}', 'imported', 'test' FROM samples"
        )
    result = cli("distill", "-w", workspace, *common, "--max-tokens", "5", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["selected"] == len(rows) == 2 and report["requests"] == 2
    prompts = query(workspace, "SELECT request FROM llm_calls")
    assert all("Three red cubes." in json.loads(p[0])["messages"][0]["content"] for p in prompts)
