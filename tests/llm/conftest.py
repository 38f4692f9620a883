"""Fixtures of the LLM-step tests: a scripted server and workspaces whose presets point at it."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import png_bytes, write_jsonl
from vlaa_data.sources import SourceOptions, open_source
from vlaa_data.steps.collect import collect
from vlaa_data.steps.llm_runner import run_llm_step
from vlaa_data.steps.llm_step import LlmOptions, LlmReport
from vlaa_data.testing.server import Reply, ScriptedServer
from vlaa_data.workspace import Workspace, init_workspace

MARKER = re.compile(r"\bQ(\d+)\b")


def marker(request: dict) -> int:
    """The sample number written into every test question ("Q7: ...")."""
    for message in request["messages"]:
        content = message["content"]
        text = (
            content
            if isinstance(content, str)
            else " ".join(part.get("text", "") for part in content if part.get("type") == "text")
        )
        found = MARKER.search(text)
        if found:
            return int(found.group(1))
    raise AssertionError("no sample marker in the request")


def r1_reply(request: dict, attempt: int) -> Reply:
    n = marker(request) if MARKER.search(str(request["messages"])) else 0
    return Reply.ok(f"The answer is {n}.", reasoning_content=f"Counting for Q{n}: wait, {n}.")


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer(r1_reply) as running:
        yield running


def add_presets(root: Path, server: ScriptedServer, *, price: float = 1.0) -> None:
    """Presets test-vlm (vision) and test-r1 (reasoning field), both on ``server``."""
    with (root / "vlaa.toml").open("a", encoding="utf-8") as toml:
        toml.write(
            f"""
[presets.test-vlm]
base_url = "{server.url}"
model = "scripted-vlm"
vision = true
price_input = {price}
price_output = {price}

[presets.test-r1]
base_url = "{server.url}"
model = "scripted-r1"
reasoning = "field"
api_key_env = "VLAA_TEST_KEY"
price_input = {price}
price_output = {price}
"""
        )


def closed_url() -> str:
    """The base URL of a port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/v1"


def fast_settings(root: Path) -> None:
    """Small timeouts and backoff so fault tests take seconds."""
    text = (root / "vlaa.toml").read_text(encoding="utf-8")
    text = text.replace("timeout_s = 600", "timeout_s = 0.5\nbackoff_s = 0.02\nflush_s = 0.05")
    text = text.replace("max_retries = 6", "max_retries = 3")
    (root / "vlaa.toml").write_text(text, encoding="utf-8")


WorkspaceFactory = Callable[..., Path]


@pytest.fixture
def llm_workspace(
    tmp_path: Path, server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> WorkspaceFactory:
    """A workspace of ``n`` samples "Q0".."Qn-1" with distinct images; presets on ``server``.

    ``caption=True`` gives every sample an existing caption and runs caption (which needs no
    call for them), so distill can start at once.
    """
    monkeypatch.setenv("VLAA_TEST_KEY", "sk-vlaa-test-secret-7f3a9c")

    def make(n: int, *, caption: bool = True, price: float = 1.0) -> Path:
        root = init_workspace(tmp_path / "ws")
        images = tmp_path / "images"
        images.mkdir(exist_ok=True)
        rows = []
        for i in range(n):
            (images / f"{i}.png").write_bytes(png_bytes((i % 256, (i * 7) % 256, 99)))
            row = {"id": f"s{i:03d}", "question": f"Q{i}: how many cubes?", "answer": str(i)}
            row["image"] = f"{i}.png"
            if caption:
                row["caption"] = f"Q{i} shows {i} cubes."
            rows.append(row)
        data = write_jsonl(tmp_path / "rows.jsonl", rows)
        mapping = {"context.caption": "caption"} if caption else {}
        source = open_source(str(data), None, SourceOptions(images=images, mapping=mapping))
        with Workspace.open(root, write=True) as ws:
            ws.settings.collect.workers = 1
            collect(ws, source, name="toy")
        add_presets(root, server, price=price)
        fast_settings(root)
        if caption:
            run_step(root, "caption", model="test-vlm")  # all skipped: no request
        return root

    return make


def run_step(root: Path, step: str, **options) -> LlmReport:
    with Workspace.open(root, write=True) as ws:
        return run_llm_step(ws, step, LlmOptions(**options))
