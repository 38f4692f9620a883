"""What every LLM step shares: its options, what a step must define, and the report.

A step module (caption, distill, ...) subclasses ``LlmStep`` with two methods: ``plan`` turns a
ready sample into a request (or a skip), ``interpret`` turns a reply into a result. Selecting
samples, the cache, sending, retries, budgets and writing live in ``llm_runner``.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vlaa_data.llm.presets import Preset
from vlaa_data.llm.reply import ChatReply
from vlaa_data.llm.request import ChatRequest
from vlaa_data.store.llm import ReadySample

if TYPE_CHECKING:
    from vlaa_data.workspace import Workspace
from vlaa_data.store.shards import Shard

__all__ = [
    "LlmOptions",
    "LlmReport",
    "LlmStep",
    "Outcome",
    "Progress",
    "Skip",
    "result_row",
    "waiting_hint",
]


@dataclass
class LlmOptions:
    """Flags of an LLM step; ``None`` means the workspace settings' value."""

    model: str | None = None
    base_url: str | Sequence[str] | None = None  # several (or commas): a fleet, llm/pool.py
    api_key_env: str | None = None
    backend: str = "openai"
    concurrency: int | None = None
    rpm: float | None = None
    tpm: float | None = None
    timeout_s: float | None = None
    max_retries: int | None = None
    max_tokens: int | None = None
    max_pixels: int | None = None
    batch_size: int | None = None
    prompt: str | None = None
    limit: int | None = None
    sources: tuple[str, ...] = ()
    shard: Shard | None = None  # only the samples of this shard (``vlaa_data.store.shards``)
    redo: bool = False
    retry_truncated: bool = False
    no_cache: bool = False
    dry_run: bool = False
    budget_usd: float | None = None
    command: str = ""
    max_word_diff: int | None = None  # rewrite only


@dataclass(frozen=True)
class Skip:
    """A sample the step passes without a model call; recorded done with ``method``."""

    method: str
    output: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    status: str  # done | rejected | failed | truncated
    output: dict[str, Any]
    reason: str | None = None
    method: str | None = None  # recorded instead of how the reply came (request, cache)


def waiting_hint(parent_step: str | None, waiting: int) -> str | None:
    """``N samples wait for caption: run caption first``, when some do."""
    if not waiting or parent_step is None:
        return None
    return f"{waiting} samples wait for {parent_step}: run {parent_step} first"


def result_row(
    sample: ReadySample,
    step: str,
    outcome: Outcome,
    *,
    method: str,
    run_id: str,
    model: str | None = None,
    key: str | None = None,
    backend: str | None = None,
    base_url: str | None = None,
    scripted: bool | None = None,
) -> dict[str, Any]:
    """The ``results`` row recording ``outcome`` (its id is given when it is written);
    ``backend``, ``base_url`` and ``scripted`` say where its reply came from, if any."""
    return {
        "id": None,
        "sample_id": sample.id,
        "step": step,
        "attempt": sample.attempts + 1,
        "status": outcome.status,
        "output": json.dumps(outcome.output, ensure_ascii=False),
        "reason": outcome.reason,
        "method": outcome.method or method,
        "model": model,
        "prompt_hash": key,
        "run_id": run_id,
        "parent_id": sample.parent_id,
        "backend": backend,
        "base_url": base_url,
        "scripted": scripted,
    }


class LlmStep(ABC):
    """A step's requests and results; what else the step is (its parent, settings, command)
    is its row of the step table, ``vlaa_data.steps.registry``."""

    name: str

    def __init__(self, template: str) -> None:
        self.template = template

    @classmethod
    def build(cls, template: str, ws: Workspace, options: LlmOptions) -> LlmStep:
        """The step for one run: its prompt ``template``, the workspace and the flags."""
        return cls(template)

    @abstractmethod
    def plan(
        self, sample: ReadySample, preset: Preset, params: dict[str, Any], max_pixels: int | None
    ) -> ChatRequest | Skip:
        """The request for ``sample`` (model and params already chosen), or a skip."""

    def ask(
        self, sample: ReadySample, preset: Preset, params: dict[str, Any], text: str
    ) -> ChatRequest:
        """A request of one user message and no system prompt (what R1 models expect)."""
        return ChatRequest(
            model=preset.model,
            messages=[{"role": "user", "content": text}],
            params=params,
            sample_id=sample.id,
        )

    @abstractmethod
    def interpret(self, sample: ReadySample, reply: ChatReply, preset: Preset) -> Outcome:
        """The result of a completed reply; ``finish_reason == 'length'`` is handled here."""


@dataclass
class Progress:
    """Counters the runner updates as it goes; the CLI draws them."""

    total: int = 0
    finished: int = 0
    requests: int = 0
    cached: int = 0
    skipped: int = 0
    failed: int = 0
    truncated: int = 0
    retries: int = 0
    in_flight: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0


@dataclass
class Estimate:
    """What ``--dry-run`` projects: requests to send and their cost."""

    requests: int = 0
    cached: int = 0
    skipped: int = 0
    tokens_in: int = 0
    tokens_out_expected: int = 0
    tokens_out_max: int = 0
    cost_expected_usd: float = 0.0
    cost_max_usd: float = 0.0
    example_prompt: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["cost_expected_usd"] = round(self.cost_expected_usd, 4)
        data["cost_max_usd"] = round(self.cost_max_usd, 4)
        return data


@dataclass
class LlmReport:
    step: str
    model: str
    backend: str
    run_id: str | None
    selected: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)  # done, cached, skipped, failed:...
    progress: Progress = field(default_factory=Progress)
    seconds: float = 0.0
    stopped: str | None = None  # "budget" | "unreachable" | "interrupted"
    stop_detail: str | None = None  # why, for "unreachable": the endpoint and its error
    left_pending: int = 0
    budget_usd: float | None = None
    estimate: Estimate | None = None
    recovered: int = 0  # replies a killed run had journaled, written when this one opened
    # Requests that brought back no reply, by reason code, and the first one's error.
    request_failures: Counter[str] = field(default_factory=Counter)
    first_failure: str | None = None
    parent_step: str | None = None
    waiting: int = 0  # samples not ready because parent_step has not done them
    # With several endpoints: replies each one sent, and what happened to them on the way.
    endpoints: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def stop_line(self) -> str | None:
        """Why the step did not do its work, in one line (the CLI exits 1 with it): the
        budget was reached, the endpoint could not be reached, or requests were sent and
        none brought back a reply. None otherwise: partial failures are only counted."""
        if self.stopped == "budget":
            return (
                f"budget reached: ${self.progress.cost_usd:.4f} spent of "
                f"${self.budget_usd or 0:.2f} (in-flight estimate included); "
                f"{self.left_pending} samples left pending; rerun with a higher --budget-usd"
            )
        if self.stopped == "unreachable":
            return (
                f"{self.stop_detail}; {self.left_pending} samples left pending: "
                "run again once it answers"
            )
        failed = sum(self.request_failures.values())
        if self.progress.requests and failed == self.progress.requests:
            reasons = ", ".join(f"{n} {r}" for r, n in self.request_failures.most_common())
            first = " ".join((self.first_failure or "").split())[:200]
            return (
                f"all {failed} requests to {self.model} failed ({reasons}; first: {first}); "
                "the samples are recorded failed and a rerun retries them"
            )
        return None

    def waiting_hint(self) -> str | None:
        return waiting_hint(self.parent_step, self.waiting)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "step": self.step,
            "model": self.model,
            "backend": self.backend,
            "run_id": self.run_id,
            "selected": self.selected,
            "outcomes": dict(sorted(self.outcomes.items())),
            "requests": self.progress.requests,
            "retries": self.progress.retries,
            "tokens_in": self.progress.tokens_in,
            "tokens_out": self.progress.tokens_out,
            "cost_usd": round(self.progress.cost_usd, 6),
            "seconds": round(self.seconds, 3),
            "stopped": self.stopped,
            "stop_detail": self.stop_detail,
            "left_pending": self.left_pending,
            "failed_requests": dict(self.request_failures),
            "waiting": {self.parent_step: self.waiting} if self.parent_step else {},
            "recovered": self.recovered,
        }
        if self.endpoints or self.notes:
            data["endpoints"], data["notes"] = dict(self.endpoints), list(self.notes)
        if self.estimate is not None:
            data["dry_run"] = self.estimate.to_dict()
        return data
