"""A workspace: ``vlaa.toml`` (settings), ``vlaa.duckdb`` (state), ``images/``, ``releases/``."""

from __future__ import annotations

import os
from pathlib import Path

from vlaa_data.errors import VlaaError, WorkspaceInUse, WorkspaceNotFound
from vlaa_data.images import ImageStore
from vlaa_data.lock import WriterLock, lock_holder
from vlaa_data.settings import Settings, default_toml, load_settings
from vlaa_data.store import Store
from vlaa_data.store.journal import replay_journals

__all__ = ["CONFIG_NAME", "DB_NAME", "Workspace", "init_workspace", "resolve_root"]

CONFIG_NAME = "vlaa.toml"
DB_NAME = "vlaa.duckdb"
LOCK_NAME = "vlaa.lock"
WORKSPACE_ENV = "VLAA_WORKSPACE"


def resolve_root(path: str | os.PathLike[str] | None) -> Path:
    """The workspace directory: ``path``, else ``$VLAA_WORKSPACE``, else the current directory."""
    chosen = path or os.environ.get(WORKSPACE_ENV) or "."
    return Path(chosen).expanduser().resolve()


def init_workspace(path: str | os.PathLike[str] | None) -> Path:
    """Create a workspace (idempotent: an existing one is left as it is, migrated)."""
    root = resolve_root(path)
    if root.exists() and not root.is_dir():
        raise VlaaError(f"{root} exists and is not a directory")
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    (root / "releases").mkdir(exist_ok=True)
    config = root / CONFIG_NAME
    if not config.exists():
        config.write_text(default_toml(), encoding="utf-8")
    with Workspace.open(root, write=True):
        pass
    return root


class Workspace:
    """An open workspace. ``write=True`` takes the writer lock for the object's lifetime."""

    def __init__(self, root: Path, settings: Settings, store: Store, lock: WriterLock | None):
        self.root = root
        self.settings = settings
        self.store = store
        self.images = ImageStore(root)
        self._lock = lock
        # Replies a crashed run had journaled, written to the database when this opened.
        self.recovered_replies = 0

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None, *, write: bool) -> Workspace:
        root = resolve_root(path)
        if not (root / CONFIG_NAME).is_file():
            raise WorkspaceNotFound(
                f"no workspace at {root} (no {CONFIG_NAME}); run `vlaa-data init {root}` or "
                f"pass -w/--workspace (or set ${WORKSPACE_ENV})"
            )
        settings = load_settings(root / CONFIG_NAME)
        if not write and not (root / DB_NAME).exists():
            raise WorkspaceNotFound(f"no {DB_NAME} in {root}; run `vlaa-data init {root}`")
        lock = None
        recovered = 0
        if write:
            lock = WriterLock(root / LOCK_NAME)
            lock.acquire()
        try:
            store = Store(
                root / DB_NAME,
                read_only=not write,
                memory_limit=settings.store.memory_limit,
                threads=settings.store.threads,
            )
            if write:
                try:
                    # We hold the lock, so a run still marked running died without finishing,
                    store.mark_interrupted_runs()
                    # and the replies it journaled but never committed are written now.
                    recovered = replay_journals(root, store)
                except BaseException:
                    store.close()
                    raise
        except WorkspaceInUse:
            if lock:
                lock.release()
            pid = lock_holder(root / LOCK_NAME)
            holder = f"PID {pid}" if pid else "another process"
            raise WorkspaceInUse(
                f"workspace in use by {holder} ({root}); try again when it finishes"
            ) from None
        except BaseException:
            if lock:
                lock.release()
            raise
        workspace = cls(root, settings, store, lock)
        workspace.recovered_replies = recovered
        return workspace

    def close(self) -> None:
        self.store.close()
        if self._lock:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
