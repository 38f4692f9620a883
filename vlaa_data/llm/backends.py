"""The backend registry: every way to reach a model, by name, built from a ``BackendSpec``.

A backend is registered with ``@register_backend(NAME, ...)`` on a factory
``f(spec, on_retry) -> Backend``; the factory imports the backend's packages, so asking for
``openai`` never loads torch. LLM steps, eval's generation and the open-ended judge all build
their backend with ``make_backend``, and ``--backend`` help texts and the "unknown backend"
error list ``backend_names()``. A *deferred* backend (``batch``: OpenAI's Batch API) answers
within hours at the preset's batch prices; only the LLM steps, which resume, take it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vlaa_data.errors import SettingsError
from vlaa_data.hf import require, resolve_dtype
from vlaa_data.llm.backend import Backend
from vlaa_data.llm.presets import Endpoint, Preset, resolve_endpoint

__all__ = [
    "BACKENDS",
    "BATCHES_IN_FLIGHT",
    "BATCH_STATE_FILE",
    "BackendFactory",
    "BackendKind",
    "BackendSpec",
    "backend_help",
    "backend_kind",
    "backend_names",
    "endpoint_for",
    "make_backend",
    "register_backend",
]


@dataclass(frozen=True)
class BackendSpec:
    """What a backend is built from; each factory reads the fields that apply to it.

    ``max_pixels`` caps the images of every request (downscaled before the model sees them);
    ``processor_max_pixels`` instead sets an in-process model's processor limit, which resizes
    once, as the model was trained. ``device`` and ``dtype`` apply to in-process models.
    ``state_dir`` is where a deferred backend records the jobs it submitted (the workspace),
    so that a later run collects them instead of paying again; ``poll_s`` is how often it
    looks at them.
    """

    kind: str  # a name in BACKENDS
    endpoint: Endpoint
    timeout_s: float
    max_retries: int
    max_pixels: int | None
    backoff_s: float = 1.0
    rpm: float | None = None
    tpm: float | None = None
    batch_size: int | None = None
    device: str | None = None
    dtype: str | None = None
    processor_max_pixels: int | None = None
    state_dir: Path | None = None
    poll_s: float = 30.0


# Requests per job of the batch backend unless --batch-size says otherwise (OpenAI takes up to
# 50,000, in files of up to 200 MB).
BATCH_API_SIZE = 1000
# Where the batch backend records its jobs, in the workspace (``BackendSpec.state_dir``).
BATCH_STATE_FILE = "batches.json"

# A caller of a deferred backend keeps this many whole batches in flight: the next batch is
# queued (and submitted) while earlier ones wait on the provider.
BATCHES_IN_FLIGHT = 4

BackendFactory = Callable[[BackendSpec, Callable[[str], None] | None], Backend]


@dataclass(frozen=True)
class BackendKind:
    """A registered backend. ``in_process``: the model runs here (``--model`` is a path or Hub
    id, reasoning arrives inline, the backend batches what is queued); otherwise requests go
    to the endpoint's ``base_url`` with the preset's key. ``requires``: ``(module, extra)``
    pairs ``check`` imports, to fail before data or model are loaded. ``deferred``: requests
    are gathered into batches of ``batch_size`` (the default) that a provider answers within
    hours at the preset's batch prices (``Preset.at_batch_prices``)."""

    name: str
    factory: BackendFactory
    summary: str
    in_process: bool = False
    requires: tuple[tuple[str, str], ...] = ()
    deferred: bool = False
    batch_size: int | None = None

    def check(self) -> None:
        """Raise, naming the extra to install, when one of the backend's packages is missing."""
        for module, extra in self.requires:
            require(module, extra, f"the {self.name} backend")

    def in_flight(self, concurrency: int, batch_size: int | None = None) -> int:
        """How many requests a caller keeps in flight at ``concurrency``: for a deferred
        backend, at least ``BATCHES_IN_FLIGHT`` whole batches (a batch holds only what is
        queued, so a window of 64 would make batches of 64)."""
        if not self.deferred:
            return concurrency
        return max(concurrency, BATCHES_IN_FLIGHT * (batch_size or self.batch_size or 1))

    def refuse_deferred(self, what: str) -> None:
        """Raise a one-line ``SettingsError`` when this backend is deferred: ``what`` (eval,
        the judge of a reward) needs its replies now and keeps no cache to resume from."""
        if self.deferred:
            raise SettingsError(
                f"the {self.name} backend answers within hours, not at once: {what} needs "
                "its replies now; use --backend openai (the LLM steps take --backend batch)"
            )


BACKENDS: dict[str, BackendKind] = {}


def register_backend(
    name: str,
    *,
    summary: str,
    in_process: bool = False,
    requires: tuple[tuple[str, str], ...] = (),
    deferred: bool = False,
    batch_size: int | None = None,
) -> Callable[[BackendFactory], BackendFactory]:
    """Register the decorated factory as backend ``name``; ``summary`` is its help text."""

    def decorate(factory: BackendFactory) -> BackendFactory:
        if name in BACKENDS:
            raise ValueError(f"backend {name!r} is registered twice")
        BACKENDS[name] = BackendKind(
            name, factory, summary, in_process, requires, deferred, batch_size
        )
        return factory

    return decorate


def backend_names() -> tuple[str, ...]:
    return tuple(BACKENDS)


def backend_help() -> str:
    """``openai (...), transformers (...), ...``: each name with its summary, for ``--help``."""
    return ", ".join(f"{kind.name} ({kind.summary})" for kind in BACKENDS.values())


def backend_kind(name: str) -> BackendKind:
    """The backend registered as ``name``; a ``SettingsError`` listing the names otherwise."""
    kind = BACKENDS.get(name)
    if kind is None:
        raise SettingsError(f"unknown backend {name!r}; use one of {', '.join(BACKENDS)}")
    return kind


def endpoint_for(
    backend: str,
    model: str,
    presets: Mapping[str, Preset],
    *,
    base_url: str | None = None,
    api_key_env: str | None = None,
    needs_key: bool = True,
) -> Endpoint:
    """Where ``backend`` sends ``model``'s requests: a preset's endpoint, resolved as
    ``resolve_endpoint`` does, or for an in-process backend the model itself (a preset of that
    name, else the path or Hub id), speaking raw text so that reasoning arrives inline.
    A deferred backend's preset carries its batch prices, which the ledger, the budget and
    ``--dry-run`` then use."""
    kind = backend_kind(backend)
    if not kind.in_process:
        endpoint = resolve_endpoint(
            model, presets, base_url=base_url, api_key_env=api_key_env, needs_key=needs_key
        )
        if kind.deferred:
            endpoint = replace(endpoint, preset=endpoint.preset.at_batch_prices())
        return endpoint
    preset = presets.get(model) or Preset(name=model, model=model, vision=True)
    return Endpoint(preset=preset.model_copy(update={"reasoning": "inline"}), base_url=None)


def make_backend(spec: BackendSpec, *, on_retry: Callable[[str], None] | None = None) -> Backend:
    """Build the backend ``spec`` names; in-process ones import their packages only here."""
    return backend_kind(spec.kind).factory(spec, on_retry)


@register_backend("openai", summary="any OpenAI-compatible HTTP endpoint")
def _openai(spec: BackendSpec, on_retry: Callable[[str], None] | None) -> Backend:
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


@register_backend(
    "batch",
    summary="OpenAI's Batch API: half price, answers within 24 h",
    deferred=True,
    batch_size=BATCH_API_SIZE,
)
def _batch(spec: BackendSpec, on_retry: Callable[[str], None] | None) -> Backend:
    from vlaa_data.llm.batch import BatchBackend, BatchConfig

    if not spec.endpoint.base_url:
        raise SettingsError(f"preset {spec.endpoint.preset.name} has no base_url; pass one")
    config = BatchConfig(
        base_url=spec.endpoint.base_url,
        api_key=spec.endpoint.api_key,
        timeout_s=spec.timeout_s,
        max_retries=spec.max_retries,
        max_pixels=spec.max_pixels,
        batch_size=spec.batch_size or BATCH_API_SIZE,
        poll_s=spec.poll_s,
        state_path=spec.state_dir / BATCH_STATE_FILE if spec.state_dir else None,
    )
    return BatchBackend(config)


@register_backend(
    "transformers",
    summary="an in-process Hugging Face model",
    in_process=True,
    requires=(("torch", "train"), ("transformers", "train")),
)
def _transformers(spec: BackendSpec, on_retry: Callable[[str], None] | None) -> Backend:
    from vlaa_data.llm.local import TransformersBackend

    return TransformersBackend(
        spec.endpoint.preset.model,
        batch_size=spec.batch_size or 8,
        device=spec.device,
        dtype=spec.dtype,
        max_pixels=spec.max_pixels,
        processor_max_pixels=spec.processor_max_pixels,
    )


@register_backend(
    "vllm",
    summary="an in-process vLLM engine, on a GPU",
    in_process=True,
    requires=(("vllm", "gpu"),),
)
def _vllm(spec: BackendSpec, on_retry: Callable[[str], None] | None) -> Backend:
    from vlaa_data.llm.local import VllmBackend

    engine: dict[str, Any] = {}
    if spec.dtype:
        engine["dtype"] = resolve_dtype(spec.dtype, "cuda")
    if spec.processor_max_pixels is not None:  # vLLM hands these to the model's HF processor
        engine["mm_processor_kwargs"] = {"max_pixels": spec.processor_max_pixels}
    return VllmBackend(
        spec.endpoint.preset.model,
        batch_size=spec.batch_size or 256,
        max_pixels=spec.max_pixels,
        **engine,
    )
