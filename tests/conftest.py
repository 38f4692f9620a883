"""Shared fixtures: each test gets its own workspace; the CLI runs as a real subprocess."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from vlaa_data.workspace import Workspace, init_workspace


def png_bytes(
    color: tuple[int, int, int] = (200, 30, 30),
    size: tuple[int, int] = (24, 16),
    image_format: str = "PNG",
) -> bytes:
    """A small real image (PNG unless told); different colours give different bytes."""
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=image_format)
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def _no_openai_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """$OPENAI_BASE_URL in the shell that runs the tests would move the OpenAI presets (as the
    OpenAI SDK does); a test that means to use it sets it."""
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A fresh, initialised workspace directory."""
    return init_workspace(tmp_path / "ws")


@pytest.fixture
def open_ws(workspace: Path):
    """Open the workspace read-only for assertions (closed after the test)."""
    opened: list[Workspace] = []

    def _open() -> Workspace:
        ws = Workspace.open(workspace, write=False)
        opened.append(ws)
        return ws

    yield _open
    for ws in opened:
        ws.close()


def query(workspace: Path, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with Workspace.open(workspace, write=False) as ws:
        return ws.store.query(sql, params).rows


CliRun = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(tmp_path: Path) -> CliRun:
    """Run ``vlaa-data ARGS`` in a subprocess; returns the CompletedProcess (text)."""

    def run(
        *args: str | os.PathLike[str],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        environment = {k: v for k, v in os.environ.items() if k != "VLAA_WORKSPACE"}
        environment.update({"COLUMNS": "200", "NO_COLOR": "1"})
        environment.update(env or {})
        return subprocess.run(
            [sys.executable, "-m", "vlaa_data", *map(str, args)],
            capture_output=True,
            text=True,
            env=environment,
            cwd=cwd or tmp_path,
            timeout=timeout,
        )

    return run


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_vlm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2-VL saved with ``save_pretrained``, built once per test session."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from vlaa_data.testing.tiny_vlm import build_tiny_qwen2vl

    return build_tiny_qwen2vl(tmp_path_factory.mktemp("tiny_vlm"))
