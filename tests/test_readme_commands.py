"""Every command the README and docs/ show: each one parses against the CLI as it is today, and
the walk-throughs run for real against the scripted server.

The parse check reads every ``vlaa-data`` (and ``-m vlaa_data``) line of the code blocks of
README.md and docs/*.md, the generated CLI reference (docs/cli.md) aside, and hands it to the
command's own parser: a renamed option, a missing argument or a bad value fails here. The
walk-through test runs the quickstart's by-hand block, the ``run`` block, the curating block
and the publishing block line by line, as written, with the changes a test must make: LLM
commands get ``--base-url`` of the scripted server and ``push`` the stand-in Hub (so that
nothing leaves 127.0.0.1), Hub model ids become the tiny test model (nothing can be
downloaded), and the files the collect lines name are made first, small, in a fake HOME. The
training and eval commands are parsed here and run by tests/train and tests/evaluation on the
tiny model.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import png_bytes
from tests.release.test_push import hub  # noqa: F401  (a fixture: the stand-in Hub)
from vlaa_data.testing.server import Reply, ScriptedServer, default_responder

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
_FENCE = re.compile(r"^```")
_ENV = re.compile(r"^[A-Z_][A-Z0-9_]*=")
_LLM_COMMANDS = {"caption", "distill", "rewrite", "verify", "run"}
_HUB_MODEL = re.compile(r"^Qwen/")


def readme_blocks() -> list[list[tuple[str, str]]]:
    """The code blocks of the README and of docs/ (the generated CLI reference aside):
    ("FILE:LINE", line) with backslash continuations joined."""
    blocks: list[list[tuple[str, str]]] = []
    for path in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        if path.name == "cli.md":
            continue
        blocks += _blocks(path)
    return blocks


def _blocks(path: Path) -> list[list[tuple[str, str]]]:
    text = path.read_text(encoding="utf-8")
    blocks, block, inside, pending = [], [], False, ""
    for number, line in enumerate(text.splitlines(), start=1):
        if _FENCE.match(line.strip()):
            if inside:
                blocks.append(block)
                block = []
            inside = not inside
            continue
        if not inside:
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        block.append((f"{path.relative_to(ROOT)}:{number}", pending + line))
        pending = ""
    return blocks


def command_args(line: str) -> list[list[str]]:
    """The argument lists of the vlaa-data commands on one shell line (``&&`` splits it)."""
    found = []
    if line[:1].isspace():  # indented: a diagram or an example's output, not a command
        return found
    for part in line.removeprefix("$ ").split("&&"):
        try:
            words = shlex.split(part, comments=True)
        except ValueError:
            continue
        while words and _ENV.match(words[0]):
            words = words[1:]
        if words[:1] == ["vlaa-data"]:
            args = words[1:]
        elif words[:1] == ["accelerate"] and "vlaa_data" in words:
            args = words[words.index("vlaa_data") + 1 :]  # accelerate launch ... -m vlaa_data
        else:
            continue
        if args and not any(word.startswith("[") for word in args):  # not a syntax summary
            found.append(args)
    return found


def parse(args: list[str]) -> str:
    """Parse ``args`` as the CLI would, without running the command; its name."""
    import typer.main

    from vlaa_data.cli import app

    command = typer.main.get_command(app)
    context = command.make_context("vlaa-data", list(args))
    name = "vlaa-data"
    while hasattr(command, "commands"):  # a group: descend to the command named
        rest = [*context._protected_args, *context.args]
        sub_name, command, rest = command.resolve_command(context, rest)
        name = f"{name} {sub_name}"
        context = command.make_context(sub_name, rest, parent=context)
    return name


def _all_commands() -> list[tuple[str, list[str]]]:
    return [
        (number, args)
        for block in readme_blocks()
        for number, line in block
        for args in command_args(line)
    ]


def test_every_readme_command_parses() -> None:
    commands = _all_commands()
    assert len(commands) > 40
    shown = set()
    for number, args in commands:
        try:
            shown.add(parse(args))
        except Exception as exc:  # click's usage errors and bad values alike
            pytest.fail(f"{number}: vlaa-data {shlex.join(args)}: {exc}")
    for expected in ("collect", "caption", "distill", "rewrite", "verify", "run", "split"):
        assert f"vlaa-data {expected}" in shown
    assert {"vlaa-data train sft", "vlaa-data train grpo", "vlaa-data eval"} <= shown


def test_a_renamed_option_would_be_caught() -> None:
    with pytest.raises(Exception, match="No such option"):
        parse(["split", "--nme", "v2"])


def _responder(request: dict, attempt: int) -> Reply:
    """The stand-in's usual reply, and a well-formed verdict per hit for the aha judge."""
    text = json.dumps(request["messages"])
    places = re.search(r"occurs at (\d+) places", text)
    if places and "filler" in text:
        verdicts = ("filler", "genuine")
        lines = [f"{n}: {verdicts[n % 2]}" for n in range(1, int(places.group(1)) + 1)]
        return Reply.ok("\n".join(lines))
    return default_responder(request, attempt)


def _block_starting(text: str) -> list[tuple[str, str]]:
    for block in readme_blocks():
        if block and block[0][1].startswith(text):
            return block
    raise AssertionError(f"no block in the README or docs/ starts with {text!r}")


def _sources(home: Path) -> None:
    """The files the quickstart's collect lines name, small and real."""
    arxiv = home / "data" / "arxivqa"
    (arxiv / "images").mkdir(parents=True)
    (arxiv / "images" / "a1.png").write_bytes(png_bytes((10, 200, 10)))
    row = {
        "id": "a1",
        "image": "images/a1.png",
        "options": ["A) 1", "B) 2", "C) 3", "D) 4"],
        "question": "Which value does the bar show?",
        "label": "C",
        "rationale": "The bar reaches 3.",
    }
    (arxiv / "arxivqa.jsonl").write_text(json.dumps(row) + "\n")
    vlaa = home / "data" / "vlaa" / "images"
    (vlaa / "clevr_math").mkdir(parents=True)
    (vlaa / "clevr_math" / "c1.png").write_bytes(png_bytes((90, 90, 200)))
    record = {
        "id": "clevr_math-c1",
        "image": "clevr_math/c1.png",
        "question": "How many spheres are there?",
        "gt": "3",
        "ds_answer": "<think>\nThree spheres. Wait, count again: three.\n</think>\n\n3",
        "caption": "Three blue spheres.",
        "meta": {"source": "clevr_math"},
    }
    (home / "VLAA-Thinking-SFT-126K.json").write_text(json.dumps([record]))


def _into_workspace(folder: Path, home: Path) -> None:
    """The files the by-hand block names relative to the workspace it has just made."""
    import shutil

    shutil.copy(home / "VLAA-Thinking-SFT-126K.json", folder)
    _rows_parquet(folder)


def _rows_parquet(folder: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {"query": "What colour is the square?", "label": "red", "image": {"bytes": png_bytes()}},
        {"query": "How many squares?", "label": "1", "image": {"bytes": png_bytes((1, 2, 3))}},
    ]
    pq.write_table(pa.Table.from_pylist(rows), folder / "rows.parquet")


def _run_line(
    line: str, cwd: Path, env: dict[str, str], url: str, model: Path | None = None
) -> Path:
    """Run the line's commands as a shell would, in ``cwd``; the folder a ``cd`` moves to."""
    for part in line.split("&&"):
        words = shlex.split(part, comments=True)
        if words[:1] == ["cd"]:
            cwd = cwd / words[1]
            continue
        for args in command_args(part):
            if model is not None:
                args = [str(model) if _HUB_MODEL.match(arg) else arg for arg in args]
            if args[0] in _LLM_COMMANDS or args[:3] == ["filter", "aha", "--method"]:
                if "--base-url" in args:  # the README's server is not here: ours stands in
                    at = args.index("--base-url")
                    args = args[:at] + args[at + 2 :]
                args = [*args, "--base-url", url]
            result = subprocess.run(
                [sys.executable, "-m", "vlaa_data", *args],
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert result.returncode == 0, (line, result.stdout[-1500:], result.stderr[-1500:])
    return cwd


@pytest.mark.slow
def test_the_walk_throughs_run_as_written(tmp_path: Path, tiny_vlm: Path, hub) -> None:  # noqa: F811
    home = tmp_path / "home"
    home.mkdir()
    _sources(home)
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(HOME=str(home), OPENAI_API_KEY="sk-test", DEEPSEEK_API_KEY="sk-test")
    env.update(HF_ENDPOINT=hub.url, HF_TOKEN="hf_test", HF_HUB_DISABLE_TELEMETRY="1")
    by_hand = _block_starting("vlaa-data init my-data")
    every_step = _block_starting("vlaa-data run")
    curating = _block_starting("vlaa-data filter aha")
    publishing = _block_starting("vlaa-data export v2")
    with ScriptedServer(_responder) as server:
        cwd = tmp_path
        for _, line in by_hand:
            cwd = _run_line(line, cwd, env, server.url)
            if line.startswith("vlaa-data init my-data"):
                _into_workspace(tmp_path / "my-data", home)
        assert cwd == tmp_path / "my-data" and server.requests
        for _, line in [*curating, *publishing, *every_step]:  # run rebuilds v1 itself
            _run_line(line.replace("HF_TOKEN=... ", ""), cwd, env, server.url, tiny_vlm)
    workspace = tmp_path / "my-data"
    status = subprocess.run(
        [sys.executable, "-m", "vlaa_data", "status", "--json", "-w", str(workspace)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    report = json.loads(status.stdout)
    assert set(report["sources"]) == {"synthetic", "arxivqa", "mine", "vlaa-thinking"}
    assert report["releases"]["v1"]["sft"] + report["releases"]["v1"]["rl"] > 0
    assert (workspace / "releases" / "v1" / "hf" / "README.md").is_file()
    assert set(report["releases"]) == {"v1", "v1m", "v2"}
    for folder in ("vlaa-v2", "vlaa-v2-json", "vlaa-v2-llamafactory"):
        assert any((workspace / folder).iterdir())
    assert hub.repos["me/vlaa-thinking-mine"]["tags"].keys() == {"v2"}
