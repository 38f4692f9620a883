"""What every collect source yields, and how sources are registered.

A source turns its dataset's layout into ``RawSample`` rows (or ``RowRejected`` for rows it
cannot even parse). It does no validation beyond its layout: the collect step checks text,
loads and validates images, deduplicates and records rejections with their reasons.
"""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from vlaa_data.images import ImageRejected

__all__ = [
    "ADAPTERS",
    "ImageRef",
    "ImportedResult",
    "RawSample",
    "RowRejected",
    "Source",
    "SourceOptions",
    "content_id",
    "image_ref",
    "register_source",
    "row_preview",
]


@dataclass(frozen=True)
class ImageRef:
    """Where a sample's image comes from; read lazily, so samples already collected cost nothing.

    Paths resolve against ``root`` and may not leave it: not by ``..``, not as an absolute path
    elsewhere, not through a symbolic link. With ``rooted_absolute`` a path that begins with
    ``/`` is taken relative to ``root`` (the VLAA-Thinking files write them so).
    """

    data: bytes | None = None
    path: str | None = None
    root: Path | None = None
    rooted_absolute: bool = False
    render: Callable[[], bytes] | None = None

    def load(self, max_bytes: int | None = None) -> bytes:
        """The image's bytes; a file larger than ``max_bytes`` is rejected before it is read."""
        if self.data is not None:
            return self.data
        if self.render is not None:
            return self.render()
        if not self.path:
            raise ImageRejected("image_missing", "the row names no image")
        path = self.resolve()
        try:
            size = path.stat().st_size
            if max_bytes is not None and size > max_bytes:
                raise ImageRejected("image_too_large", f"{size} bytes > max {max_bytes}")
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ImageRejected("image_missing", f"no file at {path}") from None
        except OSError as exc:
            raise ImageRejected("image_unreadable", f"{path}: {exc.strerror or exc}") from None

    def identity(self) -> str:
        """What names this image before it is read: its path, or a hash of its bytes."""
        if self.data is not None:
            return hashlib.sha256(self.data).hexdigest()
        return self.path or ""

    def resolve(self) -> Path:
        """The file this reference points at, links followed. Raises if that is outside the
        root (a source's rows must not make collect read files the user did not point it at),
        or exists but is neither a file nor a folder (reading a FIFO would block forever)."""
        assert self.path is not None
        raw = self.path
        root = (self.root or Path.cwd()).resolve()
        try:
            # An absolute path replaces ``root`` here, and is then checked like any other.
            candidate = (root / (raw.lstrip("/") if self.rooted_absolute else raw)).resolve()
        except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, a NUL byte
            raise ImageRejected("image_unreadable", f"{raw!r}: {exc}") from None
        if candidate != root and root not in candidate.parents:
            absolute = os.path.isabs(raw) and not self.rooted_absolute
            hint = "; pass --images with a folder that holds it" if absolute else ""
            raise ImageRejected("image_path_escapes_root", f"{raw!r} leaves {root}{hint}")
        if candidate.exists() and not (candidate.is_file() or candidate.is_dir()):
            raise ImageRejected("image_unreadable", f"{candidate} is not a regular file")
        return candidate


def image_ref(value: Any, root: Path | None, *, rooted_absolute: bool = False) -> ImageRef | None:
    """An ImageRef from a column value: a path, raw bytes, or ``{"bytes": ..., "path": ...}``."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return ImageRef(data=bytes(value))
    if isinstance(value, Mapping):
        data = value.get("bytes")
        if data:
            return ImageRef(data=bytes(data))
        path = value.get("path")
        return image_ref(path, root, rooted_absolute=rooted_absolute) if path else None
    if isinstance(value, (str, os.PathLike)):
        text = os.fspath(value).strip()
        if not text:
            return None
        return ImageRef(path=text, root=root, rooted_absolute=rooted_absolute)
    if isinstance(value, list) and len(value) == 1:  # some datasets hold a one-image list
        return image_ref(value[0], root, rooted_absolute=rooted_absolute)
    kind = type(value).__name__
    raise ImageRejected("image_unreadable", f"unsupported image value of type {kind}")


@dataclass(frozen=True)
class ImportedResult:
    """A step already done upstream (VLAA-Thinking import); chained in the order given."""

    step: str
    output: dict[str, Any]
    method: str = "imported"
    model: str | None = None


@dataclass
class RawSample:
    """One row of a source, before validation. ``source_id`` None means: derive from content."""

    source_id: str | None
    question: Any
    answer: Any
    image: ImageRef | None
    context: dict[str, Any] = field(default_factory=dict)
    reward_type: str | None = None
    imported: list[ImportedResult] = field(default_factory=list)
    row: Mapping[str, Any] | None = None


@dataclass
class RowRejected:
    """A row the source could not parse at all (malformed JSON line, wrong shape, ...)."""

    row_key: str | None
    reason: str
    detail: str
    row: Any = None


@dataclass(frozen=True)
class SourceOptions:
    """What the user said about a source on the command line."""

    images: Path | None = None  # root for relative image paths (default: the file's folder)
    mapping: Mapping[str, str] = field(default_factory=dict)  # field -> column (--map)
    split: str | None = None
    limit: int | None = None
    seed: int | None = None


class Source(ABC):
    """A collect source. Subclasses set ``name`` and implement ``rows``."""

    name: ClassVar[str]
    #: True when the source applies --limit/--seed itself (the synthetic generator).
    handles_limit: ClassVar[bool] = False

    def __init__(self, path: Path | None, options: SourceOptions) -> None:
        self.path = path
        self.options = options

    @property
    def image_root(self) -> Path:
        if self.options.images is not None:
            return self.options.images
        if self.path is None:
            return Path.cwd()
        return self.path if self.path.is_dir() else self.path.parent

    def column(self, field_name: str, default: str) -> str:
        """The column holding ``field_name``: the user's --map, else the adapter's default."""
        return self.options.mapping.get(field_name, default)

    @abstractmethod
    def rows(self) -> Iterator[RawSample | RowRejected]:
        """Yield every row of the source in a stable order."""


ADAPTERS: dict[str, type[Source]] = {}


def register_source(cls: type[Source]) -> type[Source]:
    """Class decorator: make ``cls`` available as ``vlaa-data collect <cls.name>``."""
    ADAPTERS[cls.name] = cls
    return cls


def row_preview(row: Any, limit: int = 500) -> str:
    """A short JSON preview of a row for the rejects table; bytes are summarised, not copied."""

    def shrink(value: Any) -> Any:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return f"<{len(value)} bytes>"
        if isinstance(value, Mapping):
            return {str(k): shrink(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [shrink(v) for v in value[:20]]
        if isinstance(value, str):
            return value.encode("utf-8", "replace").decode("utf-8")[:limit]
        if isinstance(value, (int, float, bool)) or value is None:
            return value
        return repr(value)[:100]

    text = json.dumps(shrink(row), ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def content_id(*parts: Any) -> str:
    """A stable id for rows that carry none: a hash of what identifies them."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:16]
