"""``export``: write a release to a folder as ``hf`` (parquet), ``vlaa-json`` or ``sharegpt``.

An ``hf`` export gets its dataset card (``release.card``): ``vlaa-data export``, ``run`` and
``push`` all write it here, so they write the same card.

The files go to a hidden folder next to ``out`` that is renamed into place at the end, so a
crash never leaves half an export under ``out``. An existing ``out`` is replaced only when it
is empty or holds an earlier export (its ``.vlaa-export.json`` marker says so); any other
folder is refused. Each export is recorded as a ``release_events`` row.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlaa_data import __version__
from vlaa_data.errors import VlaaError
from vlaa_data.release.formats import SPLITS, WRITERS
from vlaa_data.workspace import Workspace

__all__ = [
    "DEFAULT_SHARD_ROWS",
    "FORMATS",
    "MARKER",
    "ExportReport",
    "default_out",
    "export_release",
]

FORMATS = ("hf", "vlaa-json", "sharegpt")
MARKER = ".vlaa-export.json"
DEFAULT_SHARD_ROWS = 5000


@dataclass
class ExportReport:
    name: str
    format: str
    out: Path
    rows: dict[str, int] = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)  # path in ``out`` -> bytes, no images
    images: int = 0  # files under images/ (vlaa-json, sharegpt)
    image_bytes: int = 0
    run_id: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "format": self.format,
            "out": str(self.out),
            "run_id": self.run_id,
            "rows": self.rows,
            "files": self.files,
            "images": self.images,
            "image_bytes": self.image_bytes,
            "seconds": round(self.seconds, 3),
        }


def default_out(ws: Workspace, name: str, fmt: str) -> Path:
    """Where an export goes when no folder is given: ``releases/NAME/FORMAT`` in the workspace."""
    return ws.root / "releases" / name / fmt


def export_release(
    ws: Workspace,
    name: str,
    fmt: str,
    out: Path,
    *,
    run_id: str | None = None,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    command: str | None = None,
    repo_id: str | None = None,
) -> ExportReport:
    """Write release ``name`` to ``out`` in format ``fmt`` (one of ``FORMATS``).

    ``shard_rows`` is the most rows per parquet file (``hf``); ``repo_id`` names the Hub repo
    in the card's loading example (``hf``). Without ``run_id`` the export is recorded as a run
    of its own, named ``command``.
    """
    out = Path(out).expanduser().resolve()
    _check(ws, name, fmt, out, shard_rows)
    started = time.monotonic()
    settings = {"name": name, "format": fmt, "out": str(out), "shard_rows": shard_rows}
    command = command or f"vlaa-data export {name} --format {fmt}"
    with ws.store.run(command, __version__, settings, run_id=run_id) as run:
        report = ExportReport(name, fmt, out, run_id=run.id)
        run.counts = report.to_dict
        splits = {split: ws.store.release_rows(name, split) for split in SPLITS}
        report.rows = {split: len(rows) for split, rows in splits.items()}
        if not any(report.rows.values()):
            raise VlaaError(f"release {name!r} has no samples: nothing to export")
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = _sibling(out, "partial")
        try:
            WRITERS[fmt](staging, name, splits, ws.root, shard_rows)
            if fmt == "hf":
                _write_hf_card(ws, name, staging, repo_id)
            marker = {"release": name, "format": fmt, "rows": report.rows}
            (staging / MARKER).write_text(json.dumps(marker, sort_keys=True) + "\n")
            _inventory(staging, report)
            _replace(staging, out)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        report.seconds = time.monotonic() - started
        detail = {k: v for k, v in report.to_dict().items() if k not in ("name", "format", "out")}
        ws.store.record_release_event(
            name, kind="export", target=str(out), format=fmt, run_id=run.id, detail=detail
        )
    return report


def _write_hf_card(ws: Workspace, name: str, folder: Path, repo_id: str | None) -> None:
    from vlaa_data.release.card import write_card
    from vlaa_data.release.formats import hf_configs_yaml

    write_card(ws, name, folder, fmt="hf", configs=hf_configs_yaml(folder), repo_id=repo_id)


def _check(ws: Workspace, name: str, fmt: str, out: Path, shard_rows: int) -> None:
    if fmt not in FORMATS:
        raise VlaaError(f"unknown export format {fmt!r} (choose from {', '.join(FORMATS)})")
    if ws.store.release_params(name) is None:
        known = ", ".join(ws.store.release_names()) or "none yet; run `vlaa-data split` first"
        raise VlaaError(f"no release {name!r} (releases: {known})")
    if shard_rows < 1:
        raise VlaaError(f"shard rows must be 1 or more, not {shard_rows}")
    if out.exists() and not _replaceable(out):
        raise VlaaError(
            f"{out} exists and is not a vlaa-data export (no {MARKER}); "
            "choose another --out or remove it"
        )


def _replaceable(out: Path) -> bool:
    return out.is_dir() and ((out / MARKER).is_file() or not any(out.iterdir()))


def _sibling(out: Path, kind: str) -> Path:
    """A new hidden folder next to ``out`` (made with ``mkdir``, so it keeps the umask's mode)."""
    path = out.parent / f".{out.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.{kind}"
    path.mkdir()
    return path


def _inventory(folder: Path, report: ExportReport) -> None:
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if relative == MARKER:
            continue
        if relative.startswith("images/"):
            report.images += 1
            report.image_bytes += path.stat().st_size
        else:
            report.files[relative] = path.stat().st_size


def _replace(staging: Path, out: Path) -> None:
    """Move ``staging`` to ``out``; an earlier export there is set aside, then deleted."""
    if not out.exists():
        os.replace(staging, out)
        return
    old = _sibling(out, "old")
    os.replace(out, old / "export")
    os.replace(staging, out)
    shutil.rmtree(old, ignore_errors=True)
