"""Model presets: which endpoint, model id, key variable and prices a ``--model NAME`` means.

Built-in presets ship in ``presets.toml``; a workspace's ``[presets.NAME]`` tables add new ones
or override fields of built-in ones. ``--model`` also takes a raw model id, which then needs
``--base-url``. Keys are read from the environment when a step starts and live only in memory.

Where requests go, first found: ``--base-url`` (or the step's ``base_url`` in vlaa.toml);
``$OPENAI_BASE_URL`` for a preset on OpenAI's API (``api.openai.com``), as the OpenAI SDK,
distilabel and llm read it; the preset's ``base_url``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal, overload
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vlaa_data.errors import SettingsError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "OPENAI_BASE_URL_ENV",
    "Endpoint",
    "Preset",
    "builtin_presets",
    "load_presets",
    "redact_url",
    "resolve_endpoint",
]

ReasoningFormat = Literal["field", "inline", "none"]

OPENAI_HOST = "api.openai.com"
# The variable the OpenAI SDK reads for another endpoint than OpenAI's (a proxy, a gateway).
OPENAI_BASE_URL_ENV = "OPENAI_BASE_URL"


class Preset(BaseModel):
    """One named model configuration; prices are USD per million tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""
    base_url: str | None = None
    model: str
    api_key_env: str = ""
    reasoning: ReasoningFormat = "none"
    vision: bool = False
    params: dict[str, Any] = Field(default_factory=dict)
    price_input: float = Field(0.0, ge=0)
    price_output: float = Field(0.0, ge=0)
    typical_output_tokens: int = Field(500, gt=0)
    # The share a batch API takes off both prices (OpenAI's Batch API: half).
    batch_discount: float = Field(0.5, ge=0, le=1)

    def cost(self, tokens_in: int | None, tokens_out: int | None) -> float:
        return ((tokens_in or 0) * self.price_input + (tokens_out or 0) * self.price_output) / 1e6

    def at_batch_prices(self) -> Preset:
        """This preset priced as its requests cost through a batch API: ``batch_discount`` off."""
        keep = 1.0 - self.batch_discount
        return self.model_copy(
            update={
                "price_input": self.price_input * keep,
                "price_output": self.price_output * keep,
            }
        )


@dataclass(frozen=True)
class Endpoint:
    """A resolved preset plus the key it needs, ready for a backend. The key is never shown."""

    preset: Preset
    base_url: str | None
    api_key: str | None = field(default=None, repr=False)
    api_key_env: str = ""

    @property
    def shown_base_url(self) -> str | None:
        """``base_url`` as it may be stored and printed: credentials written into it
        (``https://user:secret@host/v1``) become ``***``."""
        return redact_url(self.base_url)


@overload
def redact_url(url: str) -> str: ...


@overload
def redact_url(url: None) -> None: ...


def redact_url(url: str | None) -> str | None:
    """``url`` without the password or token of its user-info part."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"***@{host}"))


def _on_openai(url: str | None) -> bool:
    return bool(url) and urlsplit(url).hostname == OPENAI_HOST


def preset_base_url(preset: Preset, environ: Mapping[str, str] | None = None) -> str | None:
    """Where a preset's requests go without ``--base-url``: ``$OPENAI_BASE_URL`` for a preset
    on OpenAI's API when it is set, else the preset's own URL."""
    environ = os.environ if environ is None else environ
    if _on_openai(preset.base_url):
        return environ.get(OPENAI_BASE_URL_ENV) or preset.base_url
    return preset.base_url


def builtin_presets() -> dict[str, dict[str, Any]]:
    text = resources.files("vlaa_data.llm").joinpath("presets.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def load_presets(user: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Preset]:
    """Built-in presets with the workspace's ``[presets.*]`` tables merged over them."""
    tables = builtin_presets()
    for name, overrides in (user or {}).items():
        tables[name] = {**tables.get(name, {}), **overrides}
    presets = {}
    for name, table in tables.items():
        try:
            presets[name] = Preset.model_validate({**table, "name": name})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise SettingsError(f"presets.{name}.{where}: {first['msg']}") from exc
    return presets


def resolve_endpoint(
    model: str,
    presets: Mapping[str, Preset],
    *,
    base_url: str | None = None,
    api_key_env: str | None = None,
    needs_key: bool = True,
    environ: Mapping[str, str] | None = None,
) -> Endpoint:
    """Turn ``--model/--base-url/--api-key-env`` into an endpoint; fail at once without a key,
    unless ``base_url`` moves the preset to another endpoint (and no ``api_key_env`` is named).

    Without ``base_url``, a preset on OpenAI's API goes to ``$OPENAI_BASE_URL`` when it is set,
    which moves it as ``base_url`` would. A name that is not a preset is a raw model id and
    needs ``base_url``. ``needs_key=False`` (in-process backends, dry runs) skips the key check.
    """
    environ = os.environ if environ is None else environ
    preset = presets.get(model)
    if preset is None:
        if not base_url:
            known = ", ".join(sorted(presets))
            raise SettingsError(
                f"unknown model preset {model!r}; use one of {known}, "
                "or pass --base-url to send a raw model id to an endpoint"
            )
        # A raw id: whether it takes images is for the endpoint to say.
        preset = Preset(name=model, model=model, vision=True)
    if not base_url and preset_base_url(preset, environ) != preset.base_url:
        base_url = preset_base_url(preset, environ)
    key_env = preset.api_key_env if api_key_env is None else api_key_env
    # At another endpoint than the preset's (a self-hosted server, which usually wants none),
    # the preset's key is sent when set, as the OpenAI SDK sends OPENAI_API_KEY to any
    # OPENAI_BASE_URL, and its absence is for that server to judge.
    moved = bool(base_url and base_url.rstrip("/") != (preset.base_url or "").rstrip("/"))
    elsewhere = moved and api_key_env is None
    key = None
    if key_env:
        key = environ.get(key_env) or None
        if key is None and needs_key and not elsewhere:
            raise SettingsError(
                f"{key_env} is not set: export {key_env}=... (the API key for "
                f"{preset.name}), or pass --api-key-env VAR to read it from another variable"
            )
    return Endpoint(
        preset=preset, base_url=base_url or preset.base_url, api_key=key, api_key_env=key_env
    )
