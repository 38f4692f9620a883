"""API keys and the Hub token reach their servers and nowhere else.

The whole pipeline runs through the real CLI with recognisable fake keys in the environment,
against the scripted OpenAI-compatible server and the stand-in Hub, both on 127.0.0.1. The
servers check that each key arrived as the bearer token; then every file the run left (the
database, also dumped table by table and after a CHECKPOINT, the journal, the lock, the
settings, the exports and their cards, logs, whatever landed in HOME or TMPDIR), everything
the commands printed and everything the Hub received is searched for each key: as it is,
URL-encoded and base64-encoded.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote, quote_plus

import duckdb
import pytest

from tests.conftest import CliRun, png_bytes, write_jsonl
from tests.release.test_push import FakeHub
from vlaa_data.testing.server import Reply, ScriptedServer

# "+" and "/" make the URL-encoded and base64 forms differ from the key itself.
OPENAI = "sk-test-OPENAI-SECRET-5d1f+e8a/9c3b"
DEEPSEEK = "sk-test-DEEPSEEK-SECRET-7b2e+a4c/1f6d"
HF = "hf_test-HUB-SECRET-3c9a+b7e/2d4f"
WRONG = "sk-test-WRONG-SECRET-0a0b+c0d/e0f1"
SECRETS = [OPENAI, DEEPSEEK, HF, WRONG]
# The preset each step uses, the model id it sends, and the key that must come with it.
KEY_OF_MODEL = {"gpt-4o": OPENAI, "deepseek-reasoner": DEEPSEEK, "gpt-3.5-turbo": OPENAI,
                "gpt-4o-mini": OPENAI}  # fmt: skip
REPO = "me/vlaa-v1"


def forms(secret: str) -> list[bytes]:
    """The secret as bytes, URL-encoded, and base64-encoded at each of the three alignments
    it can have inside a longer encoded text (the characters it shares with its neighbours
    dropped)."""
    raw = secret.encode()
    found = {raw, quote(secret, safe="").encode(), quote_plus(secret).encode()}
    for offset in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"\0" * offset + raw)
            found.add(encoded[(offset * 8 + 5) // 6 : -4])
    return sorted(found)


def leaks(haystack: bytes) -> list[str]:
    return [
        f"{s[:20]}… as {form[:12]!r}…" for s in SECRETS for form in forms(s) if form in haystack
    ]


def reply(request: dict, attempt: int) -> Reply:
    """Each step's model answers in its step's format."""
    prompt = "\n".join(
        content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)
        for content in (message["content"] for message in request["messages"])
    )
    model = request["model"]
    if model == "deepseek-reasoner":
        return Reply.ok("The answer is 3.", reasoning_content="The caption says three. Wait: 3.")
    if "nothing before or after it.\n\n" in prompt:  # rewrite
        return Reply.ok(
            prompt.split("nothing before or after it.\n\n", 1)[1].replace("caption", "image")
        )
    if "Yes or No" in prompt:  # the verify judge
        return Reply.ok("Yes")
    if "one whole number from 0 to 10" in prompt:  # the reward and eval judge
        return Reply.ok("8")
    return Reply.ok("<think>Three shapes.</think>The answer is 3.")  # captions, eval


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer(reply) as running:
        yield running


class Run:
    """The CLI with the fake keys set and HOME, TMPDIR and caches inside the test's folder;
    keeps every command's output."""

    def __init__(self, cli: CliRun, tmp_path: Path, hub: FakeHub) -> None:
        self.cli = cli
        self.outputs: list[subprocess.CompletedProcess[str]] = []
        home = tmp_path / "home"
        (home / "tmp").mkdir(parents=True)
        self.env = {
            "OPENAI_API_KEY": OPENAI,
            "DEEPSEEK_API_KEY": DEEPSEEK,
            "HF_TOKEN": HF,
            "HF_ENDPOINT": hub.url,
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HOME": str(home),
            "TMPDIR": str(home / "tmp"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "MPLCONFIGDIR": str(home / ".matplotlib"),
        }

    def __call__(self, *args: str | os.PathLike[str], ok: bool = True, **env: str):
        result = self.cli(*args, env={**self.env, **env})
        self.outputs.append(result)
        if ok:
            assert result.returncode == 0, (args, result.stderr[-2000:])
        return result


def database_dump(path: Path) -> bytes:
    """Every row of every table and view, as text, through a read-only connection."""
    with duckdb.connect(str(path), read_only=True) as con:
        names = [
            r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
        ]
        assert {"samples", "results", "llm_calls", "runs", "releases", "release_events"} <= set(
            names
        )
        dumps = [f"{name}: {con.execute(f'FROM {name}').fetchall()!r}" for name in names]
    return "\n".join(dumps).encode()


def test_keys_and_token_go_to_their_servers_and_nowhere_else(
    cli: CliRun, tmp_path: Path, server: ScriptedServer, hub: FakeHub
) -> None:
    run = Run(cli, tmp_path, hub)
    ws, url, exports = tmp_path / "ws", server.url, tmp_path / "exports"
    llm = ("--base-url", url, "--timeout", "20", "-w", ws)
    run("init", ws)
    run("collect", "synthetic", "--limit", "12", "--seed", "0", "-w", ws)
    open_rows = tmp_path / "open"
    open_rows.mkdir()
    for i in range(2):  # open-ended answers: only the judge can verify them
        (open_rows / f"{i}.png").write_bytes(png_bytes((i, 90, 9), size=(20, 20)))
    rows = [
        {"id": f"o{i}", "image": f"{i}.png", "question": "What is it?", "answer": "a red square"}
        for i in range(2)
    ]
    run("collect", write_jsonl(open_rows / "rows.jsonl", rows), "--name", "open", "-w", ws)
    run("caption", "--model", "gpt-4o", *llm)
    run("distill", "--model", "deepseek-r1", *llm)
    run("rewrite", "--model", "gpt-3.5-turbo", *llm)
    run("verify", "--judge", "gpt-4o-mini", *llm)
    run("filter", "aha", "-w", ws)
    run("split", "--name", "v1", "-w", ws)
    for fmt in ("hf", "vlaa-json", "sharegpt"):
        run("export", "v1", "--format", fmt, "--out", exports / fmt, "-w", ws)
    run("push", "v1", REPO, "--dry-run", "-w", ws)
    run("push", "v1", REPO, "--json", "-w", ws)
    scored = [
        {"completion": "It is a red square.", "answer": "a red square", "reward_type": "open"},
        {"completion": "The answer is 3.", "answer": "3", "reward_type": "digit"},
    ]
    completions = write_jsonl(tmp_path / "completions.jsonl", scored)
    readers = [  # none of them writes to the workspace: run side by side
        ("status", "--json", "-w", ws),
        ("presets", "--json", "-w", ws),
        ("sql", "SELECT * FROM runs", "--json", "-w", ws),
        ("sql", "SELECT * FROM llm_calls", "--json", "-w", ws),
        ("reward", completions, "--judge", "gpt-4o-mini", "--base-url", url,
         "-o", tmp_path / "scored.jsonl"),
        ("eval", "--model", "gpt-4o", "--base-url", url, "--data", exports / "hf", "--limit", "3",
         "--judge", "gpt-4o-mini", "--judge-base-url", url, "-o", tmp_path / "eval.jsonl"),
    ]  # fmt: skip
    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(lambda args: run(*args), readers))

    # Every step called its model, and each call carried its provider's key as the bearer.
    models = {request["model"] for request in server.requests}
    assert models == set(KEY_OF_MODEL), models
    for request, auth in zip(server.requests, server.auth_headers, strict=True):
        assert auth == f"Bearer {KEY_OF_MODEL[request['model']]}", request["model"]
    assert any("Yes or No" in json.dumps(r) for r in server.requests)  # the judge ran
    assert hub.requests and all(auth == f"Bearer {HF}" for _, _, auth in hub.requests)
    assert hub.repos[REPO]["tags"] == {"v1": hub.repos[REPO]["commits"][-1][0]}

    # An endpoint that refuses the key and echoes it, as OpenAI's 401 does: first the right
    # key, then a wrong one. The error line and the failed results must not repeat either.
    for key in (DEEPSEEK, WRONG):
        server.responder = lambda request, attempt, key=key: Reply.error(
            401, message=f"Incorrect API key provided: {key}. Find your key at example.com."
        )
        failed = run("distill", "--model", "deepseek-r1", "--redo", "--no-cache", "--limit", "2",
                     *llm, ok=False, DEEPSEEK_API_KEY=key)  # fmt: skip
        assert server.auth_headers[-1] == f"Bearer {key}"
        assert "auth_error" in failed.stdout, failed.stdout
    assert "Incorrect API key provided: ***" in database_dump(ws / "vlaa.duckdb").decode()

    found: dict[str, list[str]] = {}
    for result in run.outputs:
        for stream in (result.stdout, result.stderr):
            if hits := leaks(stream.encode()):
                found[f"output of {result.args[3:6]}"] = hits
    files = [p for p in sorted(tmp_path.rglob("*")) if p.is_file() and not p.is_symlink()]
    assert ws / "vlaa.duckdb" in files and ws / "vlaa.toml" in files and ws / "vlaa.lock" in files
    assert any(p.suffix == ".parquet" for p in files) and any(p.name == "README.md" for p in files)
    for path in files:
        if hits := leaks(path.read_bytes()):
            found[str(path.relative_to(tmp_path))] = hits
    if hits := leaks(database_dump(ws / "vlaa.duckdb")):
        found["database tables"] = hits
    with duckdb.connect(str(ws / "vlaa.duckdb")) as con:
        con.execute("CHECKPOINT")
    for path in ws.glob("vlaa.duckdb*"):
        if hits := leaks(path.read_bytes()):
            found[f"{path.name} after CHECKPOINT"] = hits
    for repo in hub.repos.values():
        received = [*repo["files"].values(), *(m.encode() for _, m, _ in repo["commits"])]
        if hits := leaks(b"\n".join(received) + json.dumps(repo["meta"]).encode()):
            found["the Hub's files and commit messages"] = hits
    if hits := leaks(json.dumps([path for _, path, _ in hub.requests]).encode()):
        found["the Hub's request paths"] = hits
    assert found == {}
