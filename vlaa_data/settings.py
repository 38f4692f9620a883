"""Typed workspace settings: ``vlaa.toml``, then ``VLAA_<SECTION>_<FIELD>`` variables, then flags.

Unknown keys are refused so that a typo never silently falls back to a default.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vlaa_data.errors import SettingsError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["DEFAULT_TOML", "CollectSettings", "Settings", "load_settings"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class CollectSettings(_Section):
    max_pixels: int = Field(50_000_000, gt=0, description="largest width*height accepted")
    max_image_bytes: int = Field(64 * 1024 * 1024, gt=0, description="largest image file")
    batch_size: int = Field(1000, gt=0, description="rows written per transaction")
    workers: int = Field(0, ge=0, description="image worker processes (0 = one per core)")


class Settings(_Section):
    collect: CollectSettings = Field(default_factory=CollectSettings)


DEFAULT_TOML = """\
# vlaa-data workspace settings. Environment variables VLAA_<SECTION>_<FIELD> override these,
# and command-line flags override both.

[collect]
# Images larger than this many pixels (width * height) are rejected as image_too_large.
max_pixels = 50_000_000
# Image files larger than this many bytes are rejected as image_too_large.
max_image_bytes = 67_108_864
# Samples written per transaction.
batch_size = 1000
# Processes that decode and validate images (0 = one per core).
workers = 0
"""


def _env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    overrides: dict[str, dict[str, str]] = {}
    for section_name, section_field in Settings.model_fields.items():
        section_model = section_field.annotation
        for field_name in section_model.model_fields:  # type: ignore[union-attr]
            value = environ.get(f"VLAA_{section_name}_{field_name}".upper())
            if value is not None:
                overrides.setdefault(section_name, {})[field_name] = value
    return overrides


def _format_validation_error(error: ValidationError, origin: str) -> str:
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"])
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{origin}: {field}: {first['msg']}{more}"


def load_settings(path: Path | None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read settings from ``path`` (a vlaa.toml; missing means defaults) and the environment."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    if path is not None and path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SettingsError(f"{path.name}: not valid TOML: {exc}") from exc
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        origin = path.name if path else "settings"
        raise SettingsError(_format_validation_error(exc, origin)) from exc
    overrides = _env_overrides(environ)
    if overrides:
        merged = settings.model_dump()
        for section, values in overrides.items():
            merged[section].update(values)
        try:
            settings = Settings.model_validate(merged)
        except ValidationError as exc:
            raise SettingsError(_format_validation_error(exc, "environment")) from exc
    return settings
