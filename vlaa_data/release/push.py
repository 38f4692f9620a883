"""Publishing an exported release to the Hugging Face Hub: one commit, one tag, one event.

The commit makes the repo hold the export and nothing older of ours: files under ``data/`` and
``assets/`` that the repo holds and the export does not (an earlier version's shards) are
deleted in the same commit, so a version's tag never holds two versions' rows. Files in other
folders (a LICENSE added by hand, say) are left alone.

A push is safe to re-run: the repo is created with ``exist_ok``, files the Hub already holds
unchanged are not committed again (huggingface_hub skips an empty commit and answers the head),
and a version tag that already points at that commit is left as it is. A tag pointing anywhere
else is refused before anything is uploaded when it can be seen then.

The token (argument, ``HF_TOKEN`` or the ``hf auth login`` file) goes to ``HfApi`` only: it is
never in a report, a log line, the runs table or a release event.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlaa_data import __version__
from vlaa_data.errors import VlaaError
from vlaa_data.workspace import Workspace

if TYPE_CHECKING:
    from huggingface_hub import HfApi

__all__ = ["REPLACED_FOLDERS", "PushFile", "PushReport", "push_release"]

# What an export writes besides README.md: a push replaces these folders' contents.
REPLACED_FOLDERS = ("data/", "assets/")


@dataclass(frozen=True)
class PushFile:
    path: str  # relative to the folder, as it will be in the repo
    size: int  # bytes


@dataclass
class PushReport:
    release: str
    repo_id: str
    tag: str
    message: str
    files: list[PushFile] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)  # earlier files of ours the commit removes
    dry_run: bool = False
    commit: str | None = None
    commit_url: str | None = None
    new_commit: bool = False  # False: the Hub already held these files at ``commit``
    run_id: str | None = None

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_bytes": self.total_bytes}


def push_release(
    ws: Workspace,
    name: str,
    repo_id: str,
    folder: Path,
    *,
    version: str | None,
    private: bool,
    dry_run: bool,
    token: str | None = None,
    api: HfApi | None = None,
) -> PushReport:
    """Upload the export ``folder`` of release ``name`` to dataset repo ``repo_id`` and tag it.

    ``version`` is the tag (default: the release name). ``dry_run`` lists what would be
    uploaded and touches neither the network nor the store.
    """
    if ws.store.release_params(name) is None:
        raise VlaaError(f"no release {name!r}; run `vlaa-data split {name}` first")
    tag = version or name
    report = PushReport(
        release=name,
        repo_id=repo_id,
        tag=tag,
        message=f"vlaa-data: release {name} (version {tag})",
        files=_folder_files(Path(folder), name),
        dry_run=dry_run,
    )
    if dry_run:
        return report
    api = _api(api, token)
    settings = {"release": name, "repo_id": repo_id, "version": tag, "private": private}
    with ws.store.run(f"vlaa-data push {name} {repo_id}", __version__, settings) as run:
        report.run_id = run.id
        run.counts = report.to_dict
        try:
            _upload(api, report, Path(folder), private=private, token=token)
        except _hub_errors() as exc:
            raise VlaaError(f"push to {repo_id} failed: {_one_line(exc)}") from exc
        ws.store.record_release_event(
            name,
            kind="push",
            target=repo_id,
            revision=report.commit,
            tag=tag,
            run_id=run.id,
            detail={"files": len(report.files), "bytes": report.total_bytes,
                    "deleted": len(report.deleted), "new_commit": report.new_commit,
                    "commit_url": report.commit_url},
        )  # fmt: skip
    return report


def _folder_files(folder: Path, name: str) -> list[PushFile]:
    if not folder.is_dir():
        raise VlaaError(
            f"{folder}: no export of release {name} there; "
            f"run `vlaa-data export {name} --format hf --out {folder}`"
        )
    files = [
        PushFile(path.relative_to(folder).as_posix(), path.stat().st_size)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not any(p.startswith(".") for p in path.relative_to(folder).parts)
    ]
    if not files:
        raise VlaaError(f"{folder}: empty; nothing to push")
    return files


def _api(api: HfApi | None, token: str | None) -> HfApi:
    from huggingface_hub import HfApi, get_token

    api = api or HfApi(token=token)  # the endpoint comes from HF_ENDPOINT
    if not (token or (isinstance(api.token, str) and api.token) or get_token()):
        raise VlaaError(
            "no Hugging Face token: set HF_TOKEN or run `hf auth login` "
            "(the token needs write access)"
        )
    return api


def _upload(
    api: HfApi, report: PushReport, folder: Path, *, private: bool, token: str | None
) -> None:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete
    from huggingface_hub.errors import HfHubHTTPError

    repo_id, tag = report.repo_id, report.tag
    # Not --private: no visibility is sent, so an organisation's default applies.
    api.create_repo(
        repo_id, repo_type="dataset", private=private or None, exist_ok=True, token=token
    )
    head, tagged = _refs(api, repo_id, tag, token)
    if tagged is not None and tagged != head:
        raise VlaaError(_tag_taken(repo_id, tag, tagged))
    report.deleted = _stale_files(api, report, head, token)
    operations: list[CommitOperationAdd | CommitOperationDelete] = [
        CommitOperationAdd(f.path, str(folder / f.path)) for f in report.files
    ]
    operations += [CommitOperationDelete(path) for path in report.deleted]
    # parent_commit: the deletions were worked out against ``head``; a push that raced this
    # one is refused by the Hub rather than losing its files or keeping stale ones.
    info = api.create_commit(
        repo_id,
        operations,
        commit_message=report.message,
        repo_type="dataset",
        token=token,
        parent_commit=head,
    )
    report.commit, report.commit_url, report.new_commit = (
        info.oid,
        info.commit_url,
        info.oid != head,
    )
    if tagged == info.oid:
        return
    if tagged is not None:  # the tag was on the old head and this push changed the files
        raise VlaaError(_tag_taken(repo_id, tag, tagged))
    try:
        api.create_tag(repo_id, tag=tag, revision=info.oid, repo_type="dataset", token=token)
    except HfHubHTTPError as exc:  # created meanwhile: fine only where it points at our commit
        if exc.response is None or exc.response.status_code != 409:
            raise
        _, tagged = _refs(api, repo_id, tag, token)
        if tagged != info.oid:
            raise VlaaError(_tag_taken(repo_id, tag, tagged or "?")) from exc


def _stale_files(api: HfApi, report: PushReport, head: str | None, token: str | None) -> list[str]:
    """Files under ``REPLACED_FOLDERS`` that the repo holds at ``head`` and the export lacks."""
    if head is None:
        return []
    held = api.list_repo_files(report.repo_id, repo_type="dataset", revision=head, token=token)
    uploading = {f.path for f in report.files}
    return sorted(p for p in held if p.startswith(REPLACED_FOLDERS) and p not in uploading)


def _refs(api: HfApi, repo_id: str, tag: str, token: str | None) -> tuple[str | None, str | None]:
    """The head of ``main`` and the commit ``tag`` points at (None where there is none)."""
    refs = api.list_repo_refs(repo_id, repo_type="dataset", token=token)
    head = next((b.target_commit for b in refs.branches if b.name == "main"), None)
    return head, next((t.target_commit for t in refs.tags if t.name == tag), None)


def _tag_taken(repo_id: str, tag: str, commit: str) -> str:
    return (
        f"tag {tag!r} already exists on {repo_id} at commit {commit[:12]}, not at this release's "
        "files; push with another --version"
    )


def _hub_errors() -> tuple[type[BaseException], ...]:
    """What the Hub or the connection to it can raise: shown as one line, not a traceback."""
    from huggingface_hub.errors import HfHubHTTPError

    # ValueError: README metadata the Hub refuses; httpx: huggingface_hub >= 1.0's transport
    errors: list[type[BaseException]] = [HfHubHTTPError, OSError, ValueError]
    try:
        import httpx

        errors.append(httpx.HTTPError)
    except ImportError:
        pass
    return tuple(errors)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
