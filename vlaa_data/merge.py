"""``vlaa-data merge``: fold shard workspaces into one, or take one shard of a workspace.

Each shard workspace is locked for reading (no command may write to it meanwhile; other
merges may read it too, as the tasks of a sharded run each take their shard of the workspace
they work for, at once), checked (same schema
version, no replies left in its journal), its image files linked or copied into the target's
``images/`` (content-addressed, so a file already there is the same file), then its database
folded in by one transaction (``vlaa_data.store.merge`` says which rows and how). A merge
stopped anywhere leaves each shard wholly merged or not at all, and running it again finishes
it: merging a shard twice adds nothing (image files a stopped merge linked stay: they are the
files a rerun needs). The merge is recorded as a run of the target.

With ``shard=Shard(i, n)`` only the rows of that shard's samples are taken from each
workspace (``vlaa_data.store.merge`` says which): a shard workspace made this way from a whole
one (even one inside it, as ``WS/shards/0-of-4`` from ``WS``) continues from where the whole
one is, and merges back into it without a duplicate row.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from vlaa_data import __version__
from vlaa_data.errors import VlaaError
from vlaa_data.lock import ReaderLock
from vlaa_data.store.journal import journal_files
from vlaa_data.store.merge import MergeCounts
from vlaa_data.store.migrations import MIGRATIONS
from vlaa_data.store.shards import Shard
from vlaa_data.workspace import CONFIG_NAME, DB_NAME, LOCK_NAME, Workspace, resolve_root

__all__ = ["MergeReport", "ShardMerge", "merge_workspaces", "shard_roots"]


@dataclass
class ShardMerge:
    """One shard workspace's part of a merge."""

    workspace: str
    counts: MergeCounts = field(default_factory=MergeCounts)
    image_files: int = 0  # linked or copied into the target
    image_files_missing: int = 0  # recorded in the shard's database, absent from its images/

    def to_dict(self) -> dict[str, Any]:
        return {
            "workspace": self.workspace,
            **self.counts.to_dict(),
            "image_files": self.image_files,
            "image_files_missing": self.image_files_missing,
        }


@dataclass
class MergeReport:
    target: str
    run_id: str | None = None
    shards: list[ShardMerge] = field(default_factory=list)
    seconds: float = 0.0

    def added(self) -> dict[str, int]:
        """Rows added per table, over every shard."""
        total: dict[str, int] = {}
        for shard in self.shards:
            for table, n in shard.counts.added.items():
                total[table] = total.get(table, 0) + n
        return total

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "run_id": self.run_id,
            "added": self.added(),
            "shards": [shard.to_dict() for shard in self.shards],
            "seconds": round(self.seconds, 3),
        }


def merge_workspaces(
    ws: Workspace,
    sources: Sequence[str | os.PathLike[str]],
    *,
    shard: Shard | None = None,
    command: str | None = None,
) -> MergeReport:
    """Merge every workspace of ``sources`` into ``ws`` (opened for writing), in order: where
    two hold results of one sample, the later one's are current (see
    ``vlaa_data.store.merge``). With ``shard``, only that shard's samples and their rows."""
    if ws.store.read_only:
        raise VlaaError("merge needs the target workspace open for writing")
    roots = shard_roots(ws.root, sources)
    report = MergeReport(target=str(ws.root))
    started = time.monotonic()
    with contextlib.ExitStack() as locks:
        for root in roots:  # all checked before any is merged
            locks.enter_context(ReaderLock(root / LOCK_NAME))
            _check_shard(ws, root)
        settings: dict[str, Any] = {"shards": [str(root) for root in roots]}
        if shard is not None:
            settings["shard"] = str(shard)
        with ws.store.run(command or "vlaa-data merge", __version__, settings) as run:
            report.run_id = run.id
            run.counts = report.to_dict
            try:
                for root in roots:
                    part = ShardMerge(workspace=str(root))
                    with ws.store.attached(root / DB_NAME) as alias:
                        images = ws.store.attached_images(alias, shard)
                        _link_images(ws.root, root, images, part)
                        part.counts = ws.store.merge_attached(alias, str(root), shard)
                    report.shards.append(part)
            finally:
                report.seconds = time.monotonic() - started
    return report


def shard_roots(target: Path, sources: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The source workspaces' directories, each once; raises if one is not a workspace or is
    ``target`` itself (which need not exist yet). A source may hold the target (a shard
    workspace inside the whole one), or the target the source."""
    if not sources:
        raise VlaaError("name at least one shard workspace to merge")
    roots: list[Path] = []
    for source in sources:
        root = resolve_root(source)
        if not (root / CONFIG_NAME).is_file() or not (root / DB_NAME).is_file():
            raise VlaaError(f"no workspace at {root} (it needs {CONFIG_NAME} and {DB_NAME})")
        if root == target or (target.exists() and os.path.samefile(root, target)):
            raise VlaaError(f"{root} is the target workspace: it cannot be merged into itself")
        if root not in roots:  # named twice: merging twice would add nothing anyway
            roots.append(root)
    return roots


def _check_shard(ws: Workspace, root: Path) -> None:
    """Refuse, in one line, a shard this vlaa-data cannot merge as it is."""
    if journal_files(root):
        raise VlaaError(
            f"{root} holds replies a stopped run received and never wrote: write them with "
            f"`vlaa-data init {root}`, then merge"
        )
    expected = MIGRATIONS[-1].version
    with ws.store.attached(root / DB_NAME) as alias:
        version = ws.store.attached_schema_version(alias)
    if version < expected:
        raise VlaaError(
            f"{root} is at schema version {version} and the target at {expected}: upgrade it "
            f"with `vlaa-data init {root}`, then merge"
        )
    if version > expected:
        raise VlaaError(
            f"{root} is at schema version {version}, newer than this vlaa-data knows "
            f"({expected}): upgrade vlaa-data"
        )


def _link_images(
    target: Path, shard: Path, images: list[tuple[str, str]], part: ShardMerge
) -> None:
    """Put each of the shard's image files the target lacks into the target's ``images/``."""
    for sha, relative in images:
        path = PurePosixPath(relative)
        if path.parts[:1] != ("images",) or ".." in path.parts or path.is_absolute():
            raise VlaaError(f"{shard}: image {sha} has a path outside images/: {relative!r}")
        destination = target / path
        if destination.exists():
            continue
        source = shard / path
        if not source.is_file():
            part.image_files_missing += 1
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        # A new name, then a rename: a stopped merge never leaves half a file under the name.
        partial = destination.with_name(f".{destination.name}.{uuid.uuid4().hex[:8]}.partial")
        try:
            os.link(source, partial)  # the same filesystem: no copy (image files never change)
        except OSError:
            shutil.copyfile(source, partial)
        os.replace(partial, destination)
        part.image_files += 1
