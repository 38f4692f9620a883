"""An ``hf`` export made by the pipeline itself, and the tiny model, for the trainer tests.

The export is built once per session: clevr (digit) and arxiv (choice) samples from the
release fixtures, plus open-ended samples verified by an LLM judge over real HTTP (the scripted
server answers "Yes"), so that the RL split holds three reward types.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import png_bytes
from tests.release.conftest import build_release, build_verified_workspace
from tests.test_collect import run_collect
from vlaa_data.release.export import export_release
from vlaa_data.steps.llm_step import LlmOptions
from vlaa_data.steps.verify import VerifyOptions, run_verify
from vlaa_data.testing.server import Reply, ScriptedServer
from vlaa_data.workspace import Workspace, init_workspace

# Open-ended samples with an aha keyword, so split sends them to RL.
OPEN = [
    ("o1", "stop", "The sign is red. Wait, check the letters: S-T-O-P.", "stop"),
    ("o2", "a red umbrella", "Hmm, someone holds something red over the head.", "an umbrella"),
]


def _collect_open(workspace: Path, tmp_path: Path) -> None:
    images = tmp_path / "open_images"
    images.mkdir(parents=True)
    records = []
    for i, (ident, gold, reasoning, answer) in enumerate(OPEN):
        (images / f"{ident}.png").write_bytes(png_bytes((200, 20 * i, 90), size=(40, 28)))
        records.append(
            {
                "id": ident,
                "image": f"{ident}.png",
                "question": f"Question {ident}: what does the image show?",
                "gt": gold,
                "ds_answer": f"<think>\n{reasoning}\n</think>\nThe answer is {answer}",
                "caption": "",
                "meta": {"reward_type": "open"},
            }
        )
    path = tmp_path / "open.json"
    path.write_text(json.dumps(records))
    run_collect(workspace, "vlaa-thinking", str(path), name="signs", images=images)


def _judge_open(workspace: Path) -> None:
    """Verify the open-ended samples with a judge that says Yes, over real HTTP."""
    with ScriptedServer(lambda request, attempt: Reply.ok("Yes")) as server:
        with (workspace / "vlaa.toml").open("a", encoding="utf-8") as toml:
            toml.write(f'\n[presets.yes-judge]\nbase_url = "{server.url}"\nmodel = "judge"\n')
        with Workspace.open(workspace, write=True) as ws:
            run_verify(ws, VerifyOptions(judge=LlmOptions(model="yes-judge"), math_workers=1))


@pytest.fixture(scope="session")
def hf_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ``hf`` export of release v1. SFT: clevr/c1, clevr/c5, arxiv/a3 (digit, choice).
    RL: clevr/c2, clevr/c4, clevr/c6 (digit), arxiv/a2 (choice), signs/o1, signs/o2 (open)."""
    root = tmp_path_factory.mktemp("train_export")
    workspace = init_workspace(root / "ws")
    _collect_open(workspace, root)
    _judge_open(workspace)
    build_release(build_verified_workspace(workspace, root))
    out = root / "hf"
    with Workspace.open(workspace, write=True) as ws:
        export_release(ws, "v1", "hf", out)
    return out


def grade_by_letters(request: dict, attempt: int) -> Reply:
    """A judge whose 0-10 grade is a fixed function of the answer's text, so the four
    completions of one prompt, which differ, get different grades."""
    prompt = request["messages"][0]["content"]
    answer = prompt.split("Answer to grade: ", 1)[1].split("\nReference", 1)[0]
    return Reply.ok(str(sum(map(ord, answer)) % 11))


@pytest.fixture
def judge() -> Iterator[ScriptedServer]:
    with ScriptedServer(grade_by_letters) as server:
        yield server


# Quick steps on CPU (max_steps comes as a flag): no warm-up (a warm-up step has learning rate
# 0), no checkpointing, a learning rate large enough that one step visibly moves the weights.
FAST = (
    "warmup_steps=0",
    "global_batch_size=none",
    "activation_checkpointing=false",
    "save_strategy=no",
    "learning_rate=1e-3",
)


def weights(folder: Path) -> dict:
    """The tensors of a model saved in ``folder`` (model.safetensors)."""
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def changed_parts(before: dict, after: dict) -> dict[str, bool]:
    """For each part (vision, projector, language): whether any of its tensors changed."""
    import torch

    from vlaa_data.train.freeze import part_of

    changed: dict[str, bool] = {}
    for name, tensor in before.items():
        part = part_of(name)
        changed[part] = changed.get(part, False) or not torch.equal(tensor, after[name])
    return changed
