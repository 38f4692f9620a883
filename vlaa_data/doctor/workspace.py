"""Workspace checks: the directory, ``vlaa.toml``, the writer lock, the reply journal, and the
database opened read-only with its schema version and its samples. Nothing here writes."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from vlaa_data.doctor.checks import Check, one_line, ws_check
from vlaa_data.errors import SettingsError, VlaaError, WorkspaceInUse, WorkspaceNotFound
from vlaa_data.lock import lock_holder
from vlaa_data.settings import Settings, load_settings
from vlaa_data.store import MIGRATIONS
from vlaa_data.store.journal import journal_files, read_journal
from vlaa_data.workspace import CONFIG_NAME, DB_NAME, LOCK_NAME, WORKSPACE_ENV

__all__ = ["workspace_checks"]


def workspace_checks(
    root: Path, environ: Mapping[str, str] | None = None
) -> tuple[list[Check], Settings | None]:
    """The workspace's checks, and its settings for the model checks (the defaults outside a
    workspace; None when ``vlaa.toml`` or the environment's settings do not load)."""
    environ = os.environ if environ is None else environ
    init = f"vlaa-data init {root}"
    config = root / CONFIG_NAME
    if not config.is_file():
        where = "no directory" if not root.is_dir() else f"no {CONFIG_NAME}"
        missing = ws_check(
            "workspace",
            "fail",
            f"no workspace at {root} ({where})",
            f"{init}, or pass -w/--workspace DIR (or set ${WORKSPACE_ENV})",
        )
        checks = [missing]
        return checks, _settings(None, environ, checks)
    checks = [_directory(root, init)]
    settings = _settings(config, environ, checks)
    writer = _live_writer(root)
    checks.append(_lock(root, writer, init))
    checks.append(_journal(root, writer, init))
    if writer is not None:
        checks.append(
            ws_check(
                "database",
                "skip",
                f"not opened: PID {writer} is writing to it",
                "run vlaa-data doctor again when that command finishes",
            )
        )
    elif settings is None:
        checks.append(ws_check("database", "skip", f"not opened: {CONFIG_NAME} must load first"))
    else:
        checks += _database(root, init)
    return checks, settings


def _directory(root: Path, init: str) -> Check:
    missing = [name for name in ("images", "releases") if not (root / name).is_dir()]
    if missing:
        return ws_check("workspace", "warn", f"{root}: no {', '.join(missing)}/ folder", init)
    return ws_check("workspace", "ok", str(root))


def _settings(
    config: Path | None, environ: Mapping[str, str], checks: list[Check]
) -> Settings | None:
    try:
        settings = load_settings(config, environ)
    except SettingsError as exc:
        fix = (
            f"correct {CONFIG_NAME} (vlaa-data init writes a commented default into a new folder)"
            if config is not None and str(exc).startswith(config.name)
            else "correct or unset that VLAA_<SECTION>_<FIELD> variable"
        )
        checks.append(ws_check(CONFIG_NAME, "fail", str(exc), fix))
        return None
    if config is not None:
        checks.append(ws_check(CONFIG_NAME, "ok", "loads"))
    return settings


def _live_writer(root: Path) -> int | None:
    """The PID in the lock file when that process still runs (the lock is then held)."""
    pid = lock_holder(root / LOCK_NAME)
    return pid if pid is not None and _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OSError:
        return False
    return True


def _lock(root: Path, writer: int | None, init: str) -> Check:
    if writer is not None:
        return ws_check("lock", "ok", f"held by PID {writer}: a command is writing")
    pid = lock_holder(root / LOCK_NAME)
    if pid is None:
        return ws_check("lock", "ok", "free")
    return ws_check(
        "lock",
        "warn",
        f"stale: {LOCK_NAME} names PID {pid}, which no longer runs (a command was killed)",
        f"{init} takes the lock over and marks that run interrupted (any writing command does)",
    )


def _journal(root: Path, writer: int | None, init: str) -> Check:
    files = journal_files(root)
    if not files:
        return ws_check("journal", "ok", "no unwritten replies")
    replies = sum(1 for path in files for _ in read_journal(path))
    found = f"{replies} replies in {len(files)} journal files"
    if writer is not None:
        return ws_check("journal", "ok", f"{found}: the running command's")
    return ws_check(
        "journal",
        "warn",
        f"{found} that a stopped run received and never wrote to the database",
        f"{init} writes them (any writing command does)",
    )


def _database(root: Path, init: str) -> list[Check]:
    from vlaa_data.status import build_status
    from vlaa_data.workspace import Workspace

    try:
        ws = Workspace.open(root, write=False)
    except WorkspaceNotFound:
        return [ws_check("database", "fail", f"no {DB_NAME} in {root}", init)]
    except WorkspaceInUse as exc:
        return [ws_check("database", "warn", str(exc), "run vlaa-data doctor again")]
    except VlaaError as exc:
        return [ws_check("database", "fail", str(exc), init)]
    except Exception as exc:  # what DuckDB says about a damaged or too-new file
        return [
            ws_check(
                "database",
                "fail",
                f"{DB_NAME} does not open: {one_line(exc)}",
                "restore it from a backup; pip install -U duckdb if a newer DuckDB wrote it",
            )
        ]
    with ws:
        size = (root / DB_NAME).stat().st_size
        checks = [ws_check("database", "ok", f"{DB_NAME} opens ({_size(size)})")]
        version, latest = ws.store.schema_version(), MIGRATIONS[-1].version
        if version == latest:
            checks.append(ws_check("schema", "ok", f"version {version} (current)"))
        elif version < latest:
            checks.append(
                ws_check(
                    "schema",
                    "warn",
                    f"version {version}; this vlaa-data migrates it to {latest} when it writes",
                    f"{init} migrates it now",
                )
            )
        else:
            checks.append(
                ws_check(
                    "schema",
                    "fail",
                    f"version {version}, newer than this vlaa-data knows ({latest})",
                    "pip install -U vlaa-data",
                )
            )
            return checks
        status = build_status(ws.store)
    sources = ", ".join(f"{name} {count}" for name, count in sorted(status.sources.items()))
    detail = f"{status.samples} samples" + (f" ({sources})" if sources else "")
    if status.releases:
        detail += f", {len(status.releases)} releases"
    if not status.samples:
        detail += "; add some with vlaa-data collect SOURCE"
    checks.append(ws_check("samples", "ok", detail))
    return checks


def _size(size: int) -> str:
    if size < 1024**2:
        return f"{size / 1024:.0f} KB"
    return f"{size / 1024**2:.1f} MB" if size < 1024**3 else f"{size / 1024**3:.1f} GB"
