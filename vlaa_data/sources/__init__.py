"""Collect sources: dataset adapters, generic file readers, the VLAA-Thinking import and the
synthetic generator, behind one entry point, ``open_source``."""

from __future__ import annotations

import re
from pathlib import Path

from vlaa_data.errors import SourceError
from vlaa_data.sources.base import ADAPTERS, RawSample, RowRejected, Source, SourceOptions

__all__ = [
    "ADAPTERS",
    "RawSample",
    "RowRejected",
    "Source",
    "SourceOptions",
    "adapter_names",
    "open_source",
]

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _register_all() -> None:
    # Importing the modules registers them; done lazily so `import vlaa_data` stays light.
    from vlaa_data.sources import adapters, synthetic, vlaa_thinking  # noqa: F401


def adapter_names() -> list[str]:
    """Every name ``collect`` accepts as SOURCE besides a path or a Hub id."""
    _register_all()
    return sorted(ADAPTERS) + [f"synthetic:{kind}" for kind in _synthetic_kinds()]


def _synthetic_kinds() -> tuple[str, ...]:
    from vlaa_data.sources.synthetic import KINDS

    return KINDS


def open_source(spec: str, path: str | Path | None, options: SourceOptions) -> Source:
    """The Source named by ``collect SOURCE [PATH]``: an adapter, synthetic, a path or a Hub id."""
    _register_all()
    name, _, kinds_spec = spec.partition(":")
    if name in ("synthetic", "synthetic-r1"):
        from vlaa_data.sources.synthetic import SyntheticSource, SyntheticTracesSource

        kinds = [k for k in kinds_spec.split(",") if k] or None
        made = SyntheticSource if name == "synthetic" else SyntheticTracesSource
        return made(None, options, kinds=kinds)
    if spec in ADAPTERS:
        if path is None:
            raise SourceError(f"collect {spec} needs a PATH to the dataset's file or folder")
        location = Path(path).expanduser()
        if not location.exists():
            raise SourceError(f"{location}: no such file or directory")
        return ADAPTERS[spec](location, options)
    if path is not None:
        raise SourceError(
            f"unknown adapter {spec!r}; adapters: {', '.join(sorted(ADAPTERS))}, synthetic"
        )
    location = Path(spec).expanduser()
    if location.exists():
        from vlaa_data.sources.generic import GenericSource

        return GenericSource(location, options)
    if _HUB_ID.match(spec):
        from vlaa_data.sources.generic import HubSource

        return HubSource(spec, options)
    raise SourceError(
        f"unknown source {spec!r}: not a file or folder, not an adapter "
        f"({', '.join(sorted(ADAPTERS))}, synthetic[:kind]), not a Hub dataset id"
    )


def default_name(spec: str, source: Source) -> str:
    """The source name samples are recorded under when --name is not given."""
    if source.name in ("file", "hub"):
        stem = Path(spec.rstrip("/")).stem if source.name == "file" else spec.split("/")[-1]
        return re.sub(r"[^\w.-]+", "-", stem).strip("-") or source.name
    return source.name
