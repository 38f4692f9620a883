"""The steps, registered once: the pipeline's order, the status counts, the card's columns, the
settings sections and the LLM commands all follow from this table.

A built-in step is a row of ``_BUILT_IN`` below; a step of another package registers itself
with ``register_step`` from a module named by a ``vlaa_data.steps`` entry point, which is
imported the first time the table is read (as llm's plugins are). Heavy code is named by
``"module:attribute"`` and imported only when the step runs, so reading the table is cheap.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from vlaa_data.errors import SettingsError
from vlaa_data.settings import RewriteSettings, StepSettings, VerifySettings
from vlaa_data.store.shards import Shard

if TYPE_CHECKING:
    from vlaa_data.steps.llm_step import LlmStep
    from vlaa_data.workspace import Workspace

__all__ = [
    "PLUGIN_GROUP",
    "RunOptions",
    "StepInfo",
    "StepOutcome",
    "StepProgress",
    "StepRunner",
    "card_columns",
    "counted_steps",
    "get_step",
    "llm_steps",
    "register_step",
    "run_steps",
    "settings_steps",
    "steps",
]

PLUGIN_GROUP = "vlaa_data.steps"
# what a step does: read a source, ask a model per sample, apply rules (with a model judge
# where rules cannot decide), score samples, or make and write a release
StepKind = Literal["source", "llm", "rules", "filter", "release"]
# samples finished, samples to finish (None: not known yet)
StepProgress = Callable[[int, int | None], None]


@dataclass
class RunOptions:
    """What ``vlaa-data run`` passes every step. ``base_url`` sends every LLM step to one
    endpoint (a self-hosted server); ``limit`` caps the samples each LLM step takes, and
    ``budget_usd`` what each may spend (else each step's budget_usd in vlaa.toml)."""

    steps: Sequence[str] | None = None  # None: every step of the run, in order
    base_url: str | None = None
    limit: int | None = None
    budget_usd: float | None = None
    rules_only: bool = False
    release: str | None = None  # default: [run] release
    export_format: str | None = None  # default: [run] export_format
    export_out: Path | None = None  # default: WORKSPACE/releases/RELEASE/FORMAT
    command: str = "vlaa-data run"
    shard: Shard | None = None  # only the samples of this shard, at every step
    # the steps this run has taken so far (a step may read what an earlier one did)
    outcomes: list[StepOutcome] = field(default_factory=list)


@dataclass
class StepOutcome:
    """What one step of a run did; ``run`` fills the counts of a counted step from status."""

    step: str
    ran: bool = False
    note: str = ""
    done: int = 0
    rejected: int = 0
    failed: int = 0
    pending: int = 0
    requests: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0
    stopped: str | None = None  # why the run cannot go on after this step, in one line
    export: str | None = None  # the folder an export step wrote

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        del data["stopped"], data["export"]
        data["cost_usd"] = round(self.cost_usd, 6)
        data["seconds"] = round(self.seconds, 3)
        return data


# How ``vlaa-data run`` runs a step: its outcome sets ``stopped`` where the run cannot go on
# (a budget reached, an endpoint gone); a VlaaError raised stops the run the same way.
StepRunner = Callable[["Workspace", RunOptions, StepProgress], StepOutcome]


@dataclass(frozen=True)
class StepInfo:
    """One step. ``plan`` (an ``LlmStep`` subclass, or ``"module:Class"``) makes a step's
    model requests: an ``llm`` step is nothing else, and the runner, cache, ledger, budget and
    its command come with it; ``verify`` and ``aha`` use theirs as judges. ``run`` (a
    ``StepRunner`` or ``"module:function"``) is how ``vlaa-data run`` runs a step that is not
    an ``llm`` one; ``in_run=False`` leaves the step out of ``run``."""

    name: str
    kind: StepKind
    summary: str  # one line: what the step does
    parent: str | None = None  # the step whose done result this one builds on
    settings: type[StepSettings] | None = None  # its [NAME] section in vlaa.toml
    default_model: str | None = None
    settings_note: str = ""  # the comment above its section in a new vlaa.toml
    prompt: Path | None = None  # None: vlaa_data/prompts/NAME.md
    plan: type[LlmStep] | str | None = None
    run: StepRunner | str | None = None
    in_run: bool = True
    counted: bool = False  # status counts each sample's state at this step
    card_column: str | None = None  # the card's per-source column of its done samples
    help: str = ""  # the rest of its command's help, for an llm step (examples)

    def __post_init__(self) -> None:
        if (self.settings is None) != (self.default_model is None):
            raise SettingsError(f"step {self.name}: settings and default_model go together")
        if self.kind == "llm" and self.plan is None:
            raise SettingsError(f"step {self.name}: an llm step needs a plan")

    def plan_class(self) -> type[LlmStep]:
        if self.plan is None:
            raise SettingsError(f"step {self.name} sends no model requests")
        return _resolve(self.plan)

    def runner(self) -> StepRunner:
        if self.run is not None:
            return _resolve(self.run)
        if self.kind == "llm":
            return _resolve("vlaa_data.steps.in_run:run_llm")(self.name)
        raise SettingsError(f"step {self.name} has no way to run in `vlaa-data run`")

    def default_settings(self) -> StepSettings:
        assert self.settings is not None and self.default_model is not None
        return self.settings(model=self.default_model)


def _resolve(target: Any) -> Any:
    if not isinstance(target, str):
        return target
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


_BUILT_IN = (
    StepInfo(
        "collect",
        kind="source",
        summary="Read a dataset into the workspace: check images, store them once, dedupe.",
        run="vlaa_data.steps.in_run:run_collect",
        counted=True,
        card_column="collected",
    ),
    StepInfo(
        "caption",
        kind="llm",
        summary="Describe each image in detail with a vision model (step 2)",
        settings=StepSettings,
        default_model="gpt-4o",
        settings_note="A vision model: each request carries the image.",
        plan="vlaa_data.steps.caption:CaptionStep",
        counted=True,
        card_column="captioned",
        help="Samples that already have a caption, or whose question is self-contained "
        "text, are recorded done without a call.\n\n"
        "Example: OPENAI_API_KEY=... vlaa-data caption --limit 100\n\n"
        "Example: vlaa-data caption --model local-qwen2.5-vl --base-url http://gpu:8000/v1",
    ),
    StepInfo(
        "distill",
        kind="llm",
        summary="Have a reasoning model answer from caption, question and context (step 3)",
        parent="caption",
        settings=StepSettings,
        default_model="deepseek-r1",
        settings_note="A reasoning model: its thinking is kept apart from its answer.",
        plan="vlaa_data.steps.distill:DistillStep",
        counted=True,
        card_column="distilled",
        help="Reasoning and answer are stored apart, whether the endpoint returns "
        "reasoning_content, inline `<think>...</think>` or a lone `</think>`.\n\n"
        "Example: DEEPSEEK_API_KEY=... vlaa-data distill --model deepseek-r1 --budget-usd 20\n\n"
        "Example: vlaa-data distill --model local-r1 --base-url http://gpu:8000/v1",
    ),
    StepInfo(
        "rewrite",
        kind="llm",
        summary="Make minimal edits so the distilled text speaks of the image, not of a "
        "caption (step 4)",
        parent="distill",
        settings=RewriteSettings,
        default_model="gpt-3.5-turbo",
        settings_note="The paper's choice; texts that never mention a caption or description "
        "need no call.",
        plan="vlaa_data.steps.rewrite:RewriteStep",
        counted=True,
        card_column="rewritten",
        help="A text that never mentions a caption, description, rationale or given text is "
        "recorded done (method unchanged) without a call. A rewrite that changes more than "
        "--max-word-diff words, or loses line breaks, is rejected with the number.\n\n"
        "Example: OPENAI_API_KEY=... vlaa-data rewrite\n\n"
        "Example: vlaa-data rewrite --model gpt-4o-mini --max-word-diff 10",
    ),
    StepInfo(
        "verify",
        kind="rules",
        summary="Check each answer against the gold: rules first, a model judge where they "
        "cannot decide (step 5)",
        parent="rewrite",
        settings=VerifySettings,
        default_model="gpt-3.5-turbo",
        settings_note="The judge, asked only where rules cannot decide (open-ended answers, "
        "unreadable golds).",
        plan="vlaa_data.steps.judge:JudgeStep",
        run="vlaa_data.steps.in_run:run_verify",
        counted=True,
        card_column="verified correct",
    ),
    StepInfo(
        "aha",
        kind="filter",
        summary="Score each reasoning trace for aha moments (keywords; a model judge with "
        "--method model)",
        settings=StepSettings,
        default_model="gpt-4o-mini",
        settings_note="The judge of `filter aha --method model`: is each keyword hit genuine "
        "self-correction?",
        plan="vlaa_data.steps.aha_judge:AhaJudgeStep",
        run="vlaa_data.steps.in_run:run_aha",
    ),
    StepInfo(
        "split",
        kind="release",
        summary="Make a release: the verified samples split into SFT, RL and test (step 6)",
        run="vlaa_data.steps.in_run:run_split",
        counted=True,
    ),
    StepInfo(
        "export",
        kind="release",
        summary="Write a release as files that load_dataset reads",
        run="vlaa_data.steps.in_run:run_export",
    ),
)

_steps: list[StepInfo] = list(_BUILT_IN)
_plugins_loaded = False


def register_step(step: StepInfo, *, after: str | None = None) -> StepInfo:
    """Add ``step`` to the table, after step ``after`` (default: before ``split``, where a new
    per-sample step belongs). Registering a name again replaces that step in its place."""
    names = [s.name for s in _steps]
    if step.name in names:
        _steps[names.index(step.name)] = step
        return step
    if step.parent is not None and step.parent not in names:
        raise SettingsError(f"step {step.name}: unknown parent step {step.parent!r}")
    anchor = after or names[names.index("split") - 1]
    if anchor not in names:
        raise SettingsError(f"step {step.name}: no step {anchor!r} to come after")
    _steps.insert(names.index(anchor) + 1, step)
    return step


def unregister_step(name: str) -> None:
    """Remove a step that ``register_step`` added (tests); the built-in ones stay."""
    if name in {s.name for s in _BUILT_IN}:
        raise SettingsError(f"step {name} is built in")
    _steps[:] = [s for s in _steps if s.name != name]


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True  # first: a plugin's own register_step reads the table
    for entry in importlib.metadata.entry_points(group=PLUGIN_GROUP):
        try:
            loaded = entry.load()
        except Exception as exc:  # a broken plugin is named, not a traceback in every command
            raise SettingsError(f"step plugin {entry.name} ({entry.value}): {exc}") from exc
        if callable(loaded):
            loaded()


def steps() -> tuple[StepInfo, ...]:
    """Every step, in pipeline order."""
    _load_plugins()
    return tuple(_steps)


def get_step(name: str) -> StepInfo:
    for step in steps():
        if step.name == name:
            return step
    raise SettingsError(f"unknown step {name!r}; the steps are {', '.join(_names(steps()))}")


def _names(chosen: Sequence[StepInfo]) -> list[str]:
    return [step.name for step in chosen]


def run_steps() -> tuple[str, ...]:
    """The steps ``vlaa-data run`` takes, in order."""
    return tuple(_names([s for s in steps() if s.in_run]))


def counted_steps() -> tuple[str, ...]:
    """The steps whose per-sample states ``status`` counts, in order."""
    return tuple(_names([s for s in steps() if s.counted]))


def llm_steps(kind: StepKind | None = None) -> tuple[str, ...]:
    """The steps that send model requests (of ``kind``, if given), in order."""
    return tuple(_names([s for s in steps() if s.plan is not None and kind in (None, s.kind)]))


def settings_steps() -> tuple[StepInfo, ...]:
    """The steps with a ``[NAME]`` section in vlaa.toml (each names a model), in order."""
    return tuple(s for s in steps() if s.settings is not None)


def card_columns() -> dict[str, str]:
    """The card's per-source columns: heading -> the step whose done samples it counts."""
    return {s.card_column: s.name for s in steps() if s.card_column is not None}
