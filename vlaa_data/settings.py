"""Typed workspace settings: ``vlaa.toml``, then ``VLAA_<SECTION>_<FIELD>`` variables, then flags.

Unknown keys are refused so that a typo never silently falls back to a default.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
)

from vlaa_data.errors import SettingsError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "CollectSettings",
    "EndpointEntry",
    "LlmSettings",
    "ReleaseSettings",
    "RewriteSettings",
    "RunCollect",
    "RunSettings",
    "Settings",
    "StepSettings",
    "StoreSettings",
    "VerifySettings",
    "default_toml",
    "endpoint_entries",
    "load_settings",
    "settings_model",
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
    batch_poll_s: float = Field(30.0, gt=0, description="seconds between polls of a batch job")


class StoreSettings(_Section):
    # DuckDB's own default is 80% of RAM, which its buffer cache fills while a large release
    # is read; queries past the limit spill to a temporary folder beside the database.
    memory_limit: str = Field(
        "1GB", pattern=r"(?i)^\s*\d+(\.\d+)?\s*[KMGT]i?B\s*$", description="DuckDB memory limit"
    )
    threads: int = Field(0, ge=0, description="DuckDB threads (0 = one per core)")


class EndpointEntry(_Section):
    """One endpoint of a fleet in a step's ``base_url`` list, with its own request limit:
    ``{url = "http://gpu-1:8000/v1", concurrency = 256}``."""

    url: str = Field(min_length=1, description="the endpoint's base URL")
    concurrency: int | None = Field(None, gt=0, description="requests in flight at it")


def endpoint_entries(value: str | Sequence[str | EndpointEntry] | None) -> list[EndpointEntry]:
    """The endpoints a ``--base-url`` or ``base_url`` value names: a URL, URLs separated by
    commas, or a list of those and of ``{url, concurrency}`` tables. Empty for none; an
    endpoint named twice is a ``SettingsError``."""
    from vlaa_data.llm.presets import redact_url

    if value is None:
        return []
    entries: list[EndpointEntry] = []
    for item in [value] if isinstance(value, str) else value:
        if isinstance(item, str):
            entries += [EndpointEntry(url=url.strip()) for url in item.split(",") if url.strip()]
        else:
            entries.append(item)
    seen: set[str] = set()
    for entry in entries:
        url = entry.url.strip().rstrip("/")
        if url in seen:
            raise SettingsError(f"base_url names endpoint {redact_url(url)} twice")
        seen.add(url)
    return entries


class StepSettings(_Section):
    model: str = Field(description="preset name or raw model id")
    # One URL, or several (a list, or commas in one string): a fleet the requests are spread over.
    base_url: str | list[str | EndpointEntry] | None = None
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
    """The workspace's settings. Each step with a model has a section of its own, named after
    it (``[caption]``, ``[distill]``, ...): those fields come from the step table
    (``vlaa_data.steps.registry``), and ``settings_model()`` is this class with them added."""

    collect: CollectSettings = Field(default_factory=CollectSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    llm: LlmSettings = Field(default_factory=LlmSettings)
    run: RunSettings = Field(default_factory=RunSettings)
    release: ReleaseSettings = Field(default_factory=ReleaseSettings)
    # [presets.NAME] tables: validated by vlaa_data.llm.presets when a step resolves a model
    presets: dict[str, dict[str, Any]] = Field(default_factory=dict)

    if TYPE_CHECKING:  # the steps' sections, added by settings_model()

        def __getattr__(self, name: str) -> Any: ...

    def step(self, name: str) -> StepSettings:
        """Step ``name``'s section (its model, endpoint, budget, ...)."""
        section = getattr(self, name, None)
        if not isinstance(section, StepSettings):
            raise SettingsError(f"step {name!r} has no settings section (it names no model)")
        return section


_models: dict[tuple[Any, ...], type[Settings]] = {}


def settings_model() -> type[Settings]:
    """``Settings`` with a section for each step of the step table that names a model."""
    from vlaa_data.steps.registry import settings_steps

    sections = settings_steps()
    key = tuple((s.name, s.settings, s.default_model) for s in sections)
    if key not in _models:
        fields: dict[str, Any] = {}
        for step in sections:
            if step.name in Settings.model_fields:
                raise SettingsError(f"step {step.name}: [{step.name}] is a settings section")
            fields[step.name] = (step.settings, Field(default_factory=step.default_settings))
        _models[key] = create_model("Settings", __base__=Settings, **fields)
    return _models[key]


def _toml_value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else str(value).lower()


def default_toml() -> str:
    """The vlaa.toml a new workspace starts with, a section for each step with a model."""
    from vlaa_data.steps.registry import settings_steps

    sections = []
    for step in settings_steps():
        assert step.settings is not None
        lines = [f"[{step.name}]"]
        if step.settings_note:
            lines.append(f"# {step.settings_note}")
        lines.append(f"model = {_toml_value(step.default_model)}")
        for name, spec in step.settings.model_fields.items():
            if name not in StepSettings.model_fields:
                note = spec.description or name
                lines += [
                    f"# {note[0].upper()}{note[1:]}.",
                    f"{name} = {_toml_value(spec.default)}",
                ]
        sections.append("\n".join(lines) + "\n")
    return "\n".join(part.rstrip("\n") + "\n" for part in [_TOML_HEAD, *sections, _TOML_TAIL])


_TOML_HEAD = """\
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
# Seconds between two looks at a --backend batch job (OpenAI's Batch API).
# batch_poll_s = 30

# Each step that asks a model has a section: model (a preset, see `vlaa-data presets`, or a raw
# model id with base_url), and optionally base_url, api_key_env, max_tokens, prompt (a file
# replacing the built-in prompt) and budget_usd (it stops sending past this spend).
"""

_TOML_TAIL = """\
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
    for section_name, section_field in settings_model().model_fields.items():
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
        settings = settings_model().model_validate(data)
    except ValidationError as exc:
        origin = path.name if path else "settings"
        raise SettingsError(_format_validation_error(exc, origin)) from exc
    overrides = _env_overrides(environ)
    if overrides:
        merged = settings.model_dump()
        for section, values in overrides.items():
            merged[section].update(values)
        try:
            settings = settings_model().model_validate(merged)
        except ValidationError as exc:
            raise SettingsError(_format_validation_error(exc, "environment")) from exc
    return settings
