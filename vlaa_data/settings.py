"""Typed workspace settings: ``vlaa.toml``, then ``VLAA_<SECTION>_<FIELD>`` variables, then flags.

Unknown keys are refused so that a typo never silently falls back to a default.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from vlaa_data.errors import SettingsError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "DEFAULT_TOML",
    "CollectSettings",
    "LlmSettings",
    "ReleaseSettings",
    "RewriteSettings",
    "RunCollect",
    "RunSettings",
    "Settings",
    "StepSettings",
    "StoreSettings",
    "VerifySettings",
    "load_settings",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class CollectSettings(_Section):
    max_pixels: int = Field(50_000_000, gt=0, description="largest width*height accepted")
    max_image_bytes: int = Field(64 * 1024 * 1024, gt=0, description="largest image file")
    batch_size: int = Field(1000, gt=0, description="rows written per transaction")
    workers: int = Field(0, ge=0, description="image worker processes (0 = one per core)")


class LlmSettings(_Section):
    concurrency: int = Field(64, gt=0, description="requests in flight at once")
    rpm: float | None = Field(None, gt=0, description="requests per minute (none = no limit)")
    tpm: float | None = Field(None, gt=0, description="tokens per minute (none = no limit)")
    timeout_s: float = Field(600.0, gt=0, description="seconds allowed per request attempt")
    max_retries: int = Field(6, ge=0, description="retries of 429/5xx/timeouts per request")
    backoff_s: float = Field(1.0, ge=0, description="first retry waits up to this; doubles")
    max_pixels: int = Field(1_048_576, gt=0, description="images are downscaled to this size")
    flush_s: float = Field(0.01, gt=0, description="a reply is written within this time")


class StoreSettings(_Section):
    # DuckDB's own default is 80% of RAM, which its buffer cache fills while a large release
    # is read; queries past the limit spill to a temporary folder beside the database.
    memory_limit: str = Field(
        "1GB", pattern=r"(?i)^\s*\d+(\.\d+)?\s*[KMGT]i?B\s*$", description="DuckDB memory limit"
    )
    threads: int = Field(0, ge=0, description="DuckDB threads (0 = one per core)")


class StepSettings(_Section):
    model: str = Field(description="preset name or raw model id")
    base_url: str | None = None
    api_key_env: str | None = None
    max_tokens: int | None = Field(None, gt=0, description="overrides the preset's max_tokens")
    prompt: str | None = Field(None, description="a prompt file replacing the built-in one")
    budget_usd: float | None = Field(None, gt=0, description="stop sending past this spend")


class RewriteSettings(StepSettings):
    max_word_diff: int = Field(15, ge=0, description="reject rewrites changing more words")


class VerifySettings(StepSettings):
    iou_threshold: float = Field(0.5, gt=0, le=1, description="IoU a box needs to be correct")
    math_deadline_s: float = Field(2.0, gt=0, description="seconds one math check may take")
    math_workers: int = Field(0, ge=0, description="math check processes (0 = one per core)")


class RunCollect(_Section):
    """One ``collect`` that ``vlaa-data run`` makes first: the arguments of the command."""

    source: str = Field(description="an adapter, synthetic, a file or a Hub id")
    path: str | None = None
    name: str | None = None
    images: str | None = None
    map: dict[str, str] = Field(default_factory=dict)
    split: str | None = None
    limit: int | None = Field(None, gt=0)
    seed: int | None = None


class RunSettings(_Section):
    collect: list[RunCollect] = Field(default_factory=list)
    release: str = Field("v1", min_length=1, description="the release split and export make")
    export_format: str = Field("hf", pattern=r"^(hf|vlaa-json|sharegpt)$")


class ReleaseSettings(_Section):
    """What the dataset card of every export and push states."""

    license: str | None = Field(
        None, min_length=1, description='a Hub license id (e.g. "cc-by-4.0"), or "other"'
    )
    license_name: str | None = Field(None, min_length=1, description='with license = "other"')
    license_link: str | None = Field(None, min_length=1, description='with license = "other"')

    @field_validator("license_name", "license_link")
    @classmethod
    def _only_with_other(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("license") != "other":
            raise ValueError(
                f"{info.field_name} names a license the Hub has no id for: "
                'it needs license = "other"'
            )
        return value


class Settings(_Section):
    collect: CollectSettings = Field(default_factory=CollectSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    llm: LlmSettings = Field(default_factory=LlmSettings)
    caption: StepSettings = Field(default_factory=lambda: StepSettings(model="gpt-4o"))
    distill: StepSettings = Field(default_factory=lambda: StepSettings(model="deepseek-r1"))
    rewrite: RewriteSettings = Field(default_factory=lambda: RewriteSettings(model="gpt-3.5-turbo"))
    verify: VerifySettings = Field(default_factory=lambda: VerifySettings(model="gpt-3.5-turbo"))
    aha: StepSettings = Field(default_factory=lambda: StepSettings(model="gpt-4o-mini"))
    run: RunSettings = Field(default_factory=RunSettings)
    release: ReleaseSettings = Field(default_factory=ReleaseSettings)
    # [presets.NAME] tables: validated by vlaa_data.llm.presets when a step resolves a model
    presets: dict[str, dict[str, Any]] = Field(default_factory=dict)


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

[store]
# The database's memory limit (e.g. "512MB", "4GB"); larger queries spill to disk beside it.
memory_limit = "1GB"
# Threads the database may use (0 = one per core).
threads = 0

[llm]
# Requests in flight at once, and optional per-minute limits (uncomment to set).
concurrency = 64
# rpm = 500
# tpm = 2_000_000
# Seconds allowed per request attempt, and retries of 429/5xx/timeouts/dropped connections.
timeout_s = 600
max_retries = 6
# Images are downscaled to at most this many pixels before they are sent.
max_pixels = 1_048_576

[caption]
# A preset name (see `vlaa-data presets`) or a raw model id with base_url.
model = "gpt-4o"
# budget_usd = 20

[distill]
model = "deepseek-r1"
# max_tokens = 32768
# budget_usd = 50

[rewrite]
# The paper's choice; texts that never mention a caption or description need no call.
model = "gpt-3.5-turbo"
# A rewrite that changes more words than this is rejected.
max_word_diff = 15

[verify]
# The judge, asked only where rules cannot decide (open-ended answers, unreadable golds).
model = "gpt-3.5-turbo"
# A predicted box is correct at this IoU with the ground truth or above.
iou_threshold = 0.5
# Seconds one Math-Verify check may take, and its processes (0 = one per core).
math_deadline_s = 2.0
math_workers = 0

[aha]
# The judge of `filter aha --method model`: is each keyword hit genuine self-correction?
model = "gpt-4o-mini"
# budget_usd = 5

[run]
# `vlaa-data run`: the release that split makes and export writes (releases/NAME/FORMAT).
release = "v1"
export_format = "hf"
# Sources it collects first (collecting again adds nothing), e.g.:
# [[run.collect]]
# source = "synthetic"
# limit = 200
# [[run.collect]]
# source = "arxivqa"
# path = "~/data/arxivqa/arxivqa.jsonl"

[release]
# The dataset card's license: a Hub license id such as "cc-by-4.0", or "other" with
# license_name and license_link naming it. Unset, the card says "other": each sample keeps its
# source dataset's terms.
# license = "cc-by-4.0"
# license = "other"
# license_name = "my-license"
# license_link = "https://example.com/LICENSE"

# Add or override model presets, e.g. a self-hosted R1 behind vLLM:
# [presets.my-r1]
# base_url = "http://gpu-box:8000/v1"
# model = "deepseek-ai/DeepSeek-R1"
# reasoning = "inline"
"""


def _env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    overrides: dict[str, dict[str, str]] = {}
    for section_name, section_field in Settings.model_fields.items():
        section_model = section_field.annotation
        if not (isinstance(section_model, type) and issubclass(section_model, _Section)):
            continue  # presets: tables of tables, set in vlaa.toml only
        for field_name in section_model.model_fields:
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
