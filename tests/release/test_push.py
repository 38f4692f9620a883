"""``push_release`` against a stand-in Hub on 127.0.0.1, through the real ``HfApi``.

The stand-in implements only what huggingface_hub calls for a push and a download: create
repo, validate the README's YAML, preupload (every file "regular", with the oid of what the
repo already holds so unchanged files are skipped), commit (NDJSON: files added or deleted),
refs, revision info, the file tree and tags at any revision, and file downloads.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections.abc import Iterator, Sequence
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
_ROUTE = re.compile(
    r"^/api/datasets/([^/]+/[^/]+)/(preupload|commit|tag|refs|revision|tree)(?:/(.*))?$"
)
_RESOLVE = re.compile(r"^/datasets/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")


class FakeHub:
    """Repos in memory: files, commits (oid, message, paths), each commit's tree, tags; every
    request recorded."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, str | None]] = []  # method, path, Authorization
        self.fail: set[str] = set()  # actions answered 500 once
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.hub = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def commit(
        self,
        repo: dict[str, Any],
        message: str,
        files: dict[str, bytes],
        deleted: Sequence[str] = (),
    ) -> str:
        parent = repo["commits"][-1][0] if repo["commits"] else ""
        changes = f"{parent}{message}{sorted(files.items())}{sorted(deleted)}"
        digest = hashlib.sha1(changes.encode()).hexdigest()
        repo["files"].update(files)
        for path in deleted:
            del repo["files"][path]
        repo["commits"].append((digest, message, sorted(files)))
        repo["trees"][digest] = dict(repo["files"])
        return digest

    def tree(self, repo: dict[str, Any], revision: str) -> tuple[str, dict[str, bytes]] | None:
        """The commit ``revision`` (main, a tag or a commit) names, and its files."""
        commit = {"main": repo["commits"][-1][0], **repo["tags"]}.get(revision, revision)
        return (commit, repo["trees"][commit]) if commit in repo["trees"] else None

    def download(self, path: str) -> tuple[int, bytes, dict[str, str]]:
        match = _RESOLVE.match(path.split("?")[0])
        found = match and match[1] in self.repos and self.tree(self.repos[match[1]], match[2])
        if not found or match[3] not in found[1]:
            return 404, b"", {"X-Error-Code": "EntryNotFound"}
        data = found[1][match[3]]
        return 200, data, {"X-Repo-Commit": found[0], "ETag": f'"{sha.git_hash(data)}"'}

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
            repo = self.repos[repo_id] = {
                "files": {}, "commits": [], "trees": {}, "tags": {}, "meta": payload
            }  # fmt: skip
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
            if any(item["key"] not in ("header", "file", "deletedFile") for item in lines):
                return 400, {"error": "only regular files and file deletions here"}
            files = {
                i["value"]["path"]: base64.b64decode(i["value"]["content"])
                for i in lines
                if i["key"] == "file"
            }
            deleted = [i["value"]["path"] for i in lines if i["key"] == "deletedFile"]
            if any(path not in repo["files"] for path in deleted):
                return 404, {"error": "deleting a file the repo does not hold"}
            oid = self.commit(repo, lines[0]["value"]["summary"], files, deleted)
            url = f"{self.url}/datasets/{match[1]}/commit/{oid}"
            return 200, {"commitUrl": url, "commitOid": oid, "pullRequestUrl": None}
        if action in ("revision", "tree"):
            found = self.tree(repo, (match[3] or "main").split("/")[0])
            if found is None:
                return 404, {"error": f"no revision {match[3]}"}
            if action == "revision":
                return 200, {"id": match[1], "sha": found[0], "private": False}
            return 200, [
                {"type": "file", "path": p, "size": len(data), "oid": sha.git_hash(data)}
                for p, data in sorted(found[1].items())
            ]
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
        headers = {"Content-Type": "application/json"}
        if self.path.startswith("/datasets/"):
            hub.requests.append((self.command, self.path, self.headers["Authorization"]))
            status, data, headers = hub.download(self.path)
        else:
            auth = self.headers["Authorization"]
            status, payload = hub.handle(self.command, self.path, body, auth)
            data = json.dumps(payload).encode()
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(data))}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_HEAD = _answer

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


def test_a_new_version_replaces_the_old_shards(released_workspace, tmp_path, hub):
    """v1 in seven one-row shards, then v2 in one shard a split: the v2 tag holds v2's files
    only, and what ``datasets`` loads from it are v2's rows; the v1 tag still holds v1."""
    import datasets
    from huggingface_hub import snapshot_download

    from tests.release.conftest import build_release
    from vlaa_data.release.export import export_release

    folder, api = tmp_path / "hf", HfApi(endpoint=hub.url, token=TOKEN)
    build_release(released_workspace, "v2", rl_quota={"clevr": 1}, test_size=1)
    reports, counts = {}, {}
    for name, shard_rows in (("v1", 1), ("v2", 5000)):
        with Workspace.open(released_workspace, write=True) as ws:
            export_release(ws, name, "hf", folder, shard_rows=shard_rows, repo_id=REPO)
            reports[name] = push_release(
                ws, name, REPO, folder, version=name, private=False, dry_run=False, api=api
            )
            counts[name] = {k: n for k, n in ws.store.release_counts()[name].items() if n}
    assert counts == {"v1": {"sft": 3, "rl": 4}, "v2": {"sft": 4, "rl": 2, "test": 1}}

    repo = hub.repos[REPO]
    v1_files = set(hub.tree(repo, "v1")[1])
    v2_files = set(hub.tree(repo, "v2")[1])
    assert len([p for p in v1_files if p.startswith("data/")]) == 7
    assert v2_files == {".gitattributes"} | {f.path for f in reports["v2"].files}
    assert reports["v2"].deleted == sorted(p for p in v1_files if p.startswith("data/"))
    assert len([p for p in v2_files if p.startswith("data/")]) == 3

    for name in ("v1", "v2"):
        snapshot = snapshot_download(
            REPO, repo_type="dataset", revision=name, endpoint=hub.url, token=TOKEN,
            local_dir=tmp_path / f"snapshot-{name}", cache_dir=tmp_path / "hub-cache",
        )  # fmt: skip
        loaded = datasets.load_dataset(snapshot, cache_dir=str(tmp_path / "datasets-cache"))
        assert {split: loaded[split].num_rows for split in loaded} == counts[name]
