"""The status report: each sample counted once per step by its current state."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from vlaa_data.steps.registry import counted_steps, get_step
from vlaa_data.store import Store

__all__ = ["STATES", "StatusReport", "build_status"]

STATES = ("done", "rejected", "failed", "pending")
# results.status -> the state status reports; truncated output is a failure to finish
_STATE_OF = {"done": "done", "rejected": "rejected", "failed": "failed", "truncated": "failed"}


def _empty_steps() -> dict[str, dict[str, int]]:
    return {step: dict.fromkeys(STATES, 0) for step in counted_steps()}


@dataclass
class StatusReport:
    samples: int = 0
    sources: dict[str, int] = field(default_factory=dict)
    steps: dict[str, dict[str, int]] = field(default_factory=_empty_steps)
    by_source: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    rejects: dict[str, dict[str, int]] = field(default_factory=dict)  # step -> reason -> n
    releases: dict[str, dict[str, int]] = field(default_factory=dict)
    # step -> calls, tokens and dollars from the ledger (every reply received, cached or not)
    llm: dict[str, dict[str, Any]] = field(default_factory=dict)
    # step -> base URL (or in-process backend) -> {"results": current results whose reply came
    # from there, "scripted": how many of them the scripted stand-in server sent}
    endpoints: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    # step -> current results whose reply came from the scripted stand-in server: placeholders
    scripted: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "sources": self.sources,
            "steps": self.steps,
            "rejects": self.rejects,
            "releases": self.releases,
            "llm": self.llm,
            "endpoints": self.endpoints,
            "scripted": self.scripted,
        }


def build_status(store: Store) -> StatusReport:
    """Count samples per source and step from the store's current results."""
    raw = store.status_rows()
    report = StatusReport()
    by_source: dict[str, dict[str, dict[str, int]]] = defaultdict(_empty_steps)
    rejects: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for source, count in raw["samples"]:
        report.sources[source] = count
        by_source[source]["collect"]["done"] = count
    for source, reason, count in raw["collect_rejects"]:
        by_source[source]["collect"]["rejected"] += count
        rejects["collect"][reason] += count
    for source, step, status, reason, count in raw["results"]:
        if step not in report.steps:
            continue
        state = _STATE_OF.get(status, "failed")
        by_source[source][step][state] += count
        if state != "done":
            rejects[step][reason or status] += count
    # The split step's state is where the most recent release put each sample.
    for source, split, why, count in store.latest_release_places():
        state = "rejected" if split == "excluded" else "done"
        by_source[source]["split"][state] += count
        if state == "rejected":
            rejects["split"][why] += count
    # a sample a step has not finished is pending there (collect has no pending samples)
    after_collect = [step for step in counted_steps() if get_step(step).kind != "source"]
    for source, steps in by_source.items():
        total = report.sources.get(source, 0)
        for step in after_collect:
            counts = steps[step]
            counts["pending"] = max(
                0, total - counts["done"] - counts["rejected"] - counts["failed"]
            )
        for step, counts in steps.items():
            for state, n in counts.items():
                report.steps[step][state] += n
    for step, model, calls, tokens_in, tokens_out, cost in store.ledger_rows():
        entry = report.llm.setdefault(
            step, {"calls": 0, "tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0, "models": []}
        )
        entry["calls"] += calls
        entry["tokens_in"] += int(tokens_in)
        entry["tokens_out"] += int(tokens_out)
        entry["cost_usd"] = round(entry["cost_usd"] + cost, 6)
        entry["models"].append(model)
    for step, endpoint, scripted, count in raw["endpoints"]:
        counts = report.endpoints.setdefault(step, {}).setdefault(
            endpoint, {"results": 0, "scripted": 0}
        )
        counts["results"] += count
        if scripted:
            counts["scripted"] += count
            report.scripted[step] = report.scripted.get(step, 0) + count
    report.releases = store.release_counts()
    report.samples = sum(report.sources.values())
    report.by_source = dict(sorted(by_source.items()))
    report.rejects = {step: dict(sorted(r.items())) for step, r in rejects.items()}
    return report
