"""Choosing a backend: HTTP to any OpenAI-compatible endpoint, or an in-process model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vlaa_data.errors import SettingsError
from vlaa_data.llm.backend import Backend
from vlaa_data.llm.presets import Endpoint

__all__ = ["BackendSpec", "make_backend"]


@dataclass(frozen=True)
class BackendSpec:
    kind: str  # openai | transformers | vllm
    endpoint: Endpoint
    timeout_s: float
    max_retries: int
    max_pixels: int | None
    backoff_s: float = 1.0
    rpm: float | None = None
    tpm: float | None = None
    batch_size: int | None = None


def make_backend(spec: BackendSpec, *, on_retry: Callable[[str], None] | None = None) -> Backend:
    """Build the backend ``spec`` names; in-process ones import their packages only here."""
    if spec.kind == "openai":
        from vlaa_data.llm.http import HttpBackend, HttpConfig
        from vlaa_data.llm.limits import RateLimiter

        if not spec.endpoint.base_url:
            raise SettingsError(f"preset {spec.endpoint.preset.name} has no base_url; pass one")
        limiter = RateLimiter(spec.rpm, spec.tpm) if (spec.rpm or spec.tpm) else None
        config = HttpConfig(
            base_url=spec.endpoint.base_url,
            api_key=spec.endpoint.api_key,
            timeout_s=spec.timeout_s,
            max_retries=spec.max_retries,
            backoff_base_s=spec.backoff_s,
            max_pixels=spec.max_pixels,
        )
        return HttpBackend(config, limiter=limiter, on_retry=on_retry)
    if spec.kind == "transformers":
        from vlaa_data.llm.local import TransformersBackend

        return TransformersBackend(
            spec.endpoint.preset.model, batch_size=spec.batch_size or 8, max_pixels=spec.max_pixels
        )
    if spec.kind == "vllm":
        from vlaa_data.llm.local import VllmBackend

        return VllmBackend(
            spec.endpoint.preset.model,
            batch_size=spec.batch_size or 256,
            max_pixels=spec.max_pixels,
        )
    raise SettingsError(f"unknown backend {spec.kind!r}; use openai, transformers or vllm")
