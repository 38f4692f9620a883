"""``push_release`` against a stand-in Hub on 127.0.0.1, through the real ``HfApi``.

The stand-in implements only what huggingface_hub calls for a push: create repo, validate the
README's YAML, preupload (every file "regular", with the oid of what the repo already holds so
unchanged files are skipped), commit (NDJSON), refs, revision info and tags.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import HfApi, constants
from huggingface_hub.utils import sha

from vlaa_data.errors import VlaaError
from vlaa_data.release.card import write_card
from vlaa_data.release.push import PushFile, push_release
from vlaa_data.workspace import Workspace

TOKEN = "hf_TestTokenThatMustNotLeak0123456789"
REPO = "me/vlaa-v1"
_ROUTE = re.compile(r"^/api/datasets/([^/]+/[^/]+)/(preupload|commit|tag|refs|revision)(?:/(.*))?$")


class FakeHub:
    """Repos in memory: files, commits (oid, message, paths), tags; every request recorded."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, str | None]] = []  # method, path, Authorization
        self.fail: set[str] = set()  # actions answered 500 once
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.hub = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def commit(self, repo: dict[str, Any], message: str, files: dict[str, bytes]) -> str:
        parent = repo["commits"][-1][0] if repo["commits"] else ""
        digest = hashlib.sha1(f"{parent}{message}{sorted(files.items())}".encode()).hexdigest()
        repo["files"].update(files)
        repo["commits"].append((digest, message, sorted(files)))
        return digest

    def handle(self, method: str, path: str, body: bytes, auth: str | None) -> tuple[int, Any]:
        self.requests.append((method, path, auth))
        if path == "/api/validate-yaml":
            return 200, {"errors": [], "warnings": []}
        if path == "/api/repos/create":
            payload = json.loads(body)
            repo_id = f"{payload['organization']}/{payload['name']}"
            url = f"{self.url}/datasets/{repo_id}"
            if repo_id in self.repos:  # the Hub names the existing repo's url
                return 409, {"error": "You already created this dataset repo", "url": url}
            repo = self.repos[repo_id] = {"files": {}, "commits": [], "tags": {}, "meta": payload}
            self.commit(repo, "initial commit", {".gitattributes": b"*.parquet filter=lfs\n"})
            return 200, {"url": url, "name": repo_id}
        match = _ROUTE.match(path.split("?")[0])
        if not match or match[1] not in self.repos:
            return 404, {"error": f"not found: {path}"}
        repo, action = self.repos[match[1]], match[2]
        if action in self.fail:
            self.fail.discard(action)
            return 500, {"error": "injected failure"}
        head = repo["commits"][-1][0]
        if action == "preupload":
            files = json.loads(body)["files"]
            return 200, {"files": [self._mode(repo, f["path"]) for f in files]}
        if action == "commit":
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            if any(item["key"] != "header" and item["key"] != "file" for item in lines):
                return 400, {"error": "only regular files here"}
            files = {
                i["value"]["path"]: base64.b64decode(i["value"]["content"])
                for i in lines
                if i["key"] == "file"
            }
            oid = self.commit(repo, lines[0]["value"]["summary"], files)
            url = f"{self.url}/datasets/{match[1]}/commit/{oid}"
            return 200, {"commitUrl": url, "commitOid": oid, "pullRequestUrl": None}
        if action == "revision":
            return 200, {"id": match[1], "sha": head, "private": False}
        if action == "refs":
            tags = [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": c}
                    for n, c in repo["tags"].items()]  # fmt: skip
            main = {"name": "main", "ref": "refs/heads/main", "targetCommit": head}
            return 200, {"branches": [main], "converts": [], "tags": tags}
        tag = json.loads(body)["tag"]
        if tag in repo["tags"]:
            return 409, {"error": "Tag already exists"}
        repo["tags"][tag] = match[3]
        return 200, {}

    @staticmethod
    def _mode(repo: dict[str, Any], path: str) -> dict[str, Any]:
        held = repo["files"].get(path)
        oid = sha.git_hash(held) if held is not None else None
        return {"path": path, "uploadMode": "regular", "shouldIgnore": False, "oid": oid}


class _Handler(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        hub: FakeHub = self.server.hub  # type: ignore[attr-defined]
        status, payload = hub.handle(self.command, self.path, body, self.headers["Authorization"])
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    fake = FakeHub()
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


@pytest.fixture
def no_login(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No token anywhere but where a test puts one."""
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))


@pytest.fixture
def folder(released_workspace: Path, tmp_path: Path) -> Path:
    """An export of ``v1`` as the push sees it: two data files, the card and its plots."""
    out = tmp_path / "export"
    (out / "data").mkdir(parents=True)
    (out / "data" / "sft.jsonl").write_text('{"question": "q1"}\n' * 3)
    (out / "data" / "rl.jsonl").write_text('{"question": "q2"}\n' * 4)
    with Workspace.open(released_workspace, write=False) as ws:
        write_card(ws, "v1", out, repo_id=REPO)
    return out


FILES = ["README.md", "assets/reasoning_length.png", "assets/sources.png", "data/rl.jsonl",
         "data/sft.jsonl"]  # fmt: skip


def push(workspace: Path, folder: Path, hub: FakeHub, **options: Any):
    options = {"version": None, "private": False, "dry_run": False, **options}
    api = options.pop("api", HfApi(endpoint=hub.url, token=TOKEN))
    with Workspace.open(workspace, write=True) as ws:
        return push_release(ws, "v1", REPO, folder, api=api, **options)


def events(workspace: Path) -> list[tuple[Any, ...]]:
    with Workspace.open(workspace, write=False) as ws:
        return ws.store.query(
            "SELECT kind, target, revision, tag, detail FROM release_events ORDER BY created_at"
        ).rows


def test_dry_run_lists_files_and_touches_nothing(released_workspace, folder, hub, no_login):
    with Workspace.open(released_workspace, write=False) as ws:  # read-only is enough
        report = push_release(
            ws, "v1", REPO, folder, version="2025.1", private=True, dry_run=True,
            api=HfApi(endpoint=hub.url),
        )  # fmt: skip
    assert report.files == [PushFile(p, (folder / p).stat().st_size) for p in FILES]
    assert report.files[3] == PushFile("data/rl.jsonl", 76)
    assert report.message == "vlaa-data: release v1 (version 2025.1)"
    assert (report.tag, report.commit, report.dry_run) == ("2025.1", None, True)
    assert hub.requests == []
    assert events(released_workspace) == []


def test_push_commits_every_file_once_tags_and_records(released_workspace, folder, hub):
    report = push(released_workspace, folder, hub, private=True)
    repo = hub.repos[REPO]
    assert repo["meta"] == {"name": "vlaa-v1", "organization": "me", "visibility": "private",
                            "type": "dataset"}  # fmt: skip
    assert len(repo["commits"]) == 2  # the repo's initial commit, then ours
    oid, message, paths = repo["commits"][-1]
    assert (message, paths) == ("vlaa-data: release v1 (version v1)", FILES)
    for path in FILES:
        assert repo["files"][path] == (folder / path).read_bytes()
    assert repo["tags"] == {"v1": oid}
    assert (report.commit, report.tag, report.new_commit) == (oid, "v1", True)
    assert all(auth == f"Bearer {TOKEN}" for _, _, auth in hub.requests)
    [(kind, target, revision, tag, detail)] = events(released_workspace)
    assert (kind, target, revision, tag) == ("push", REPO, oid, "v1")
    assert json.loads(detail)["files"] == 5


def test_rerun_after_success_uploads_nothing_new(released_workspace, folder, hub):
    first = push(released_workspace, folder, hub, version="1.0")
    second = push(released_workspace, folder, hub, version="1.0")
    assert second.commit == first.commit and not second.new_commit
    assert len(hub.repos[REPO]["commits"]) == 2
    assert hub.repos[REPO]["tags"] == {"1.0": first.commit}
    assert [e[2] for e in events(released_workspace)] == [first.commit, first.commit]


def test_a_failed_push_can_be_rerun(released_workspace, folder, hub):
    hub.fail.add("tag")
    with pytest.raises(VlaaError, match=f"^push to {REPO} failed: ") as failure:
        push(released_workspace, folder, hub)
    assert "\n" not in str(failure.value)
    assert events(released_workspace) == []
    report = push(released_workspace, folder, hub)
    assert len(hub.repos[REPO]["commits"]) == 2  # the files went up once
    assert hub.repos[REPO]["tags"] == {"v1": report.commit}
    assert len(events(released_workspace)) == 1


def test_a_tag_elsewhere_is_refused_before_uploading(released_workspace, folder, hub):
    push(released_workspace, folder, hub)
    (folder / "data" / "rl.jsonl").write_text('{"question": "changed"}\n')
    with pytest.raises(VlaaError, match=r"^tag 'v1' already exists on me/vlaa-v1 at commit"):
        push(released_workspace, folder, hub)
    hub.repos[REPO]["tags"]["old"] = hub.repos[REPO]["commits"][0][0]
    commits = len(hub.repos[REPO]["commits"])
    with pytest.raises(VlaaError, match="another --version"):
        push(released_workspace, folder, hub, version="old")
    assert len(hub.repos[REPO]["commits"]) == commits  # nothing was uploaded
    report = push(released_workspace, folder, hub, version="v2")
    assert hub.repos[REPO]["tags"]["v2"] == report.commit


def test_token_never_leaks(released_workspace, folder, hub, no_login, monkeypatch):
    # The token from HF_TOKEN, the endpoint as HF_ENDPOINT would set it, HfApi built inside.
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    report = push(released_workspace, folder, hub, api=None)
    assert report.commit and hub.requests[0][2] == f"Bearer {TOKEN}"
    assert TOKEN not in json.dumps(report.to_dict())
    for path in released_workspace.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    assert TOKEN not in (folder / "README.md").read_text()


def test_no_token_says_what_to_set(released_workspace, folder, hub, no_login):
    with pytest.raises(VlaaError, match="set HF_TOKEN or run `hf auth login`"):
        push(released_workspace, folder, hub, api=HfApi(endpoint=hub.url))
    assert hub.requests == []


def test_missing_folder_and_release(released_workspace, tmp_path, hub):
    with pytest.raises(VlaaError, match="vlaa-data export v1 --format hf"):
        push(released_workspace, tmp_path / "nowhere", hub)
    with (
        Workspace.open(released_workspace, write=False) as ws,
        pytest.raises(VlaaError, match="no release 'v9'"),
    ):
        push_release(ws, "v9", REPO, tmp_path, version=None, private=False, dry_run=True)
