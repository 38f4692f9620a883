"""caption and distill against ``transformers serve``, an OpenAI-compatible server we did not write.

The served model is the tiny random Qwen2-VL, so the checks are about the pipeline, not the
text: every sample gets a result that agrees with serve's ``finish_reason`` (a reply cut at
``max_tokens`` is ``truncated``), tokens are counted, the replies are serve's own (its request
ids, the model's name), the image reaches the model, and a rerun is answered from the cache.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CliRun, png_bytes, query, write_jsonl
from tests.llm.conftest import run_step
from vlaa_data.sources import SourceOptions, open_source
from vlaa_data.steps.collect import collect
from vlaa_data.testing.serve import TransformersServe
from vlaa_data.workspace import Workspace, init_workspace

pytestmark = pytest.mark.slow

MAX_TOKENS = 8
VISION_PRESET = "served-vlm"


@pytest.fixture(scope="module")
def served(tiny_vlm: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TransformersServe]:
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    log = tmp_path_factory.mktemp("transformers_serve") / "serve.log"
    with TransformersServe(tiny_vlm, log_path=log) as server:
        yield server


@pytest.fixture(scope="module")
def tokenizer(tiny_vlm: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_vlm))


def new_workspace(path: Path, served: TransformersServe, source, name: str) -> Path:
    root = init_workspace(path)
    with Workspace.open(root, write=True) as ws:
        ws.settings.collect.workers = 1
        collect(ws, source, name=name)
    # A raw model id stands for a text-only model; caption needs a preset saying vision = true.
    with (root / "vlaa.toml").open("a", encoding="utf-8") as toml:
        toml.write(
            f"\n[presets.{VISION_PRESET}]\nmodel = {json.dumps(served.model)}\nvision = true\n"
        )
    return root


def run_cli(cli: CliRun, root: Path, served: TransformersServe, step: str, model: str, *flags: str):
    args = ["-w", root, "-m", model, "--base-url", served.url, "--max-tokens", str(MAX_TOKENS)]
    result = cli(step, *args, "--json", *flags)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def chat_posts(served: TransformersServe) -> int:
    """Chat completions serve has answered, from its access log."""
    return served.log().count('"POST /v1/chat/completions HTTP/1.1" 200')


def text_tokens(tokenizer: Any, request_json: str) -> int:
    """Prompt tokens of a ledger request's text alone, as the served chat template makes them."""
    messages = []
    for message in json.loads(request_json)["messages"]:
        content = message["content"]
        if isinstance(content, list):
            content = " ".join(part["text"] for part in content if part["type"] == "text")
        messages.append({"role": message["role"], "content": content})
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=False)
    return len(ids)


def check_served_run(
    root: Path, served: TransformersServe, step: str, report: dict, tokenizer: Any
) -> dict[str, str]:
    """Every sample has one served reply and a result that agrees with it; returns the statuses."""
    samples = {row[0] for row in query(root, "SELECT id FROM samples")}
    calls = query(
        root,
        "SELECT sample_id, status, finish_reason, tokens_in, tokens_out, base_url, request, "
        "response FROM llm_calls WHERE step = ?",
        [step],
    )
    rows = query(
        root, "SELECT sample_id, status, reason, method FROM current_results WHERE step = ?", [step]
    )
    results = {sample: tuple(outcome) for sample, *outcome in rows}
    assert report["selected"] == report["requests"] == len(samples) == 3
    assert sum(report["outcomes"].values()) == 3
    assert len(calls) == 3 and {call[0] for call in calls} == set(results) == samples
    for sample, status, finish, tokens_in, tokens_out, base_url, request, response in calls:
        body = json.loads(response)
        assert status == "ok" and base_url == served.url
        # serve's own reply: its request id (a UUID) and the model id with the revision it loaded.
        uuid.UUID(body["id"])
        # serve names the model "{model}@main" up to transformers 5.23, the bare folder since
        assert body["model"] in (served.model, f"{served.model}@main")
        assert body["usage"]["prompt_tokens"] == tokens_in
        assert 0 < tokens_out <= MAX_TOKENS
        prompt_text = text_tokens(tokenizer, request)
        if step == "caption":
            # The image's tokens are counted too; serve drops images it cannot take, silently.
            assert tokens_in > prompt_text
        else:
            assert tokens_in == prompt_text
        assert finish in ("length", "stop")
        expected = ("truncated", "length") if finish == "length" else ("done", None)
        assert results[sample] == (*expected, "request")
    assert report["tokens_in"] == sum(call[3] for call in calls)
    assert report["tokens_out"] == sum(call[4] for call in calls)
    return {sample: outcome[0] for sample, outcome in results.items()}


def check_rerun_is_cached(
    cli: CliRun, root: Path, served: TransformersServe, step: str, model: str, statuses: dict
) -> None:
    posts = chat_posts(served)
    calls = query(root, "SELECT count(*) FROM llm_calls")[0][0]
    report = run_cli(cli, root, served, step, model, "--redo")
    assert report["selected"] == 3 and report["requests"] == 0
    assert chat_posts(served) == posts
    assert query(root, "SELECT count(*) FROM llm_calls")[0][0] == calls
    rows = query(root, "SELECT sample_id, status FROM current_results WHERE step = ?", [step])
    assert dict(rows) == statuses


def test_caption_through_transformers_serve(
    served: TransformersServe, tokenizer: Any, tmp_path: Path, cli: CliRun
) -> None:
    source = open_source("synthetic", None, SourceOptions(limit=3, seed=0))
    root = new_workspace(tmp_path / "ws", served, source, "synthetic")
    posts = chat_posts(served)

    report = run_cli(cli, root, served, "caption", VISION_PRESET)

    statuses = check_served_run(root, served, "caption", report, tokenizer)
    assert chat_posts(served) == posts + 3
    check_rerun_is_cached(cli, root, served, "caption", VISION_PRESET, statuses)


def test_distill_through_transformers_serve(
    served: TransformersServe, tokenizer: Any, tmp_path: Path, cli: CliRun
) -> None:
    # Samples that come with captions: distill takes only done captions, and the random model's
    # own may well be truncated.
    images = tmp_path / "images"
    images.mkdir()
    rows = []
    for i in range(3):
        (images / f"{i}.png").write_bytes(png_bytes((i * 80, 30, 99)))
        rows.append(
            {
                "id": f"s{i}",
                "question": f"How many cubes are there? ({i})",
                "answer": str(i),
                "image": f"{i}.png",
                "caption": f"A table with {i} red cubes.",
            }
        )
    data = write_jsonl(tmp_path / "rows.jsonl", rows)
    options = SourceOptions(images=images, mapping={"context.caption": "caption"})
    root = new_workspace(tmp_path / "ws", served, open_source(str(data), None, options), "toy")
    captioned = run_step(root, "caption", model=VISION_PRESET, base_url=served.url)
    assert captioned.outcomes == {"skipped:existing_caption": 3}
    posts = chat_posts(served)

    # A raw model id with --base-url: no preset, no key.
    report = run_cli(cli, root, served, "distill", served.model)

    statuses = check_served_run(root, served, "distill", report, tokenizer)
    assert chat_posts(served) == posts + 3
    check_rerun_is_cached(cli, root, served, "distill", served.model, statuses)
