"""``split``: verified samples into a named release of disjoint splits: SFT, RL and a held-out test.

First a small test part is held out (``--test-size``: about a fraction of the candidates'
images, capped, or a count), whole images at a time, so that no image of the test part is in
SFT or RL: ``eval`` scores a model on it rather than on the data it trained on. Then the
paper's rule (RECIPE.md step 6): a verified-correct sample with an aha moment goes to RL, one
without to SFT. Then, in this order: ``--where`` keeps the rows a SQL predicate over
``samples_view`` selects (it applies before the test part is drawn); RL quotas per source keep
N; an SFT sample whose image is in RL is dropped (no image in both splits); ``--ppl-top K``
keeps the K highest-perplexity SFT samples; SFT quotas per source keep N. Where a quota or the
ordering must choose, it takes samples in the order of sha256(seed:id) (images for the test
part: sha256(seed:test:image)), so a release is a function of the store's state and its
parameters. Every considered sample is recorded with its split (``sft``, ``rl``, ``test`` or
``excluded``) and why, so ``vlaa-data sql`` can explain any sample's place. A release that
would hold no sample is not saved.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from vlaa_data import __version__
from vlaa_data.errors import EmptyRelease, VlaaError
from vlaa_data.store.releases import SPLITS
from vlaa_data.workspace import Workspace

__all__ = [
    "DEFAULT_TEST_SIZE",
    "RULES",
    "TEST_CAP",
    "SplitOptions",
    "SplitReport",
    "parse_test_size",
    "run_split",
]

# The default held-out part: about 2% of the candidates' images, at most TEST_CAP samples (a
# count given as --test-size is exact and not capped).
DEFAULT_TEST_SIZE = 0.02
TEST_CAP = 1000

_COLUMNS = [
    "id",
    "source",
    "image_sha",
    "verdict",
    "text_result_id",
    "aha_count",
    "aha_model_count",
    "ppl",
]


@dataclass(frozen=True)
class _Row:
    id: str
    source: str
    image_sha: str
    verdict: str | None
    text_result_id: int | None
    aha_count: int | None
    aha_model_count: int | None
    ppl: float | None


Rule = Callable[[_Row, str], tuple[str, str]]  # (row, aha score) -> (split, why)
RULES: dict[str, Rule] = {}


def rule(name: str) -> Callable[[Rule], Rule]:
    def register(function: Rule) -> Rule:
        RULES[name] = function
        return function

    return register


@rule("aha")
def _aha_rule(row: _Row, aha_score: str) -> tuple[str, str]:
    """The paper's: with an aha moment to RL, without to SFT."""
    count = row.aha_model_count if aha_score == "aha_model" else row.aha_count
    return ("rl", "aha") if count else ("sft", "no_aha")


@rule("pass")
def _pass_rule(row: _Row, aha_score: str) -> tuple[str, str]:
    """Every verified sample to SFT (an RL split then comes from quotas of another release)."""
    return "sft", "pass"


@dataclass
class SplitOptions:
    name: str = "default"
    rule: str = "aha"
    aha_score: str = "aha"  # aha (keywords) | aha_model (a model's judgement of each hit)
    rl_quota: Mapping[str, int] = field(default_factory=dict)
    sft_quota: Mapping[str, int] = field(default_factory=dict)
    seed: int = 0
    where: str | None = None
    ppl_top: int | None = None
    # < 1: about that fraction of the images (at most TEST_CAP samples); >= 1: that many
    # samples; 0: none
    test_size: float = DEFAULT_TEST_SIZE
    replace: bool = False
    command: str | None = None

    def params(self) -> dict[str, Any]:
        """What rebuilds the release (the name and command aside)."""
        params = asdict(self)
        for key in ("name", "replace", "command"):
            params.pop(key)
        params["rl_quota"], params["sft_quota"] = dict(self.rl_quota), dict(self.sft_quota)
        return params


@dataclass
class SplitReport:
    name: str
    run_id: str | None = None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    by_source: dict[str, dict[str, int]] = field(default_factory=dict)
    excluded: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "run_id": self.run_id,
            **self.counts,
            "by_source": self.by_source,
            "excluded": dict(sorted(self.excluded.items())),
            "seconds": round(self.seconds, 3),
        }


def run_split(ws: Workspace, options: SplitOptions) -> SplitReport:
    """Build the release ``options.name`` and save it with its parameters."""
    _check(ws, options)
    started = time.monotonic()
    rows = [_Row(*r) for r in ws.store.view_rows(_COLUMNS)]
    kept = {r[0] for r in ws.store.view_rows(["id"], options.where)} if options.where else None
    order = {r.id: _order_key(options.seed, r.id) for r in rows}
    place: dict[str, tuple[str, str]] = {}  # id -> (split, why)
    candidates: list[_Row] = []
    for row in rows:
        if row.verdict != "correct":
            place[row.id] = ("excluded", "not_verified")
        elif kept is not None and row.id not in kept:
            place[row.id] = ("excluded", "where")
        else:
            candidates.append(row)
    _require_scores(candidates, options)
    for row in _held_out(candidates, options):
        place[row.id] = ("test", "held_out")
    assign = RULES[options.rule]
    for row in candidates:
        if row.id not in place:
            place[row.id] = assign(row, options.aha_score)
    by_id = {row.id: row for row in candidates}

    def members(split: str) -> list[_Row]:
        chosen = [by_id[i] for i, (s, _) in place.items() if s == split and i in by_id]
        return sorted(chosen, key=lambda r: order[r.id])

    _apply_quota(members("rl"), options.rl_quota, place, "rl_quota")
    rl_images = {r.image_sha for r in members("rl")}
    for row in members("sft"):
        if row.image_sha in rl_images:
            place[row.id] = ("excluded", "image_in_rl")
    if options.ppl_top is not None:
        hardest = sorted(members("sft"), key=lambda r: (-(r.ppl or 0.0), order[r.id]))
        for row in hardest[options.ppl_top :]:
            place[row.id] = ("excluded", "ppl_top")
    _apply_quota(members("sft"), options.sft_quota, place, "sft_quota")

    _refuse_empty(rows, candidates, place, options)
    report = SplitReport(options.name)
    positions: dict[str, int] = {}
    for split in SPLITS:
        for position, row in enumerate(members(split)):
            positions[row.id] = position
    source_of = {row.id: row.source for row in rows}
    text_of = {row.id: row.text_result_id for row in rows}
    records = []
    for sample_id, (split, why) in sorted(place.items()):
        records.append(
            {
                "sample_id": sample_id,
                "split": split,
                "position": positions.get(sample_id),
                "why": why,
                "text_result_id": text_of[sample_id],
            }
        )
        if split == "excluded":
            report.excluded[why] += 1
        else:
            report.counts[split] += 1
            per_source = report.by_source.setdefault(source_of[sample_id], dict.fromkeys(SPLITS, 0))
            per_source[split] += 1
    report.by_source = dict(sorted(report.by_source.items()))
    counts = {**report.counts, "by_source": report.by_source, "excluded": dict(report.excluded)}
    with ws.store.run(options.command or "vlaa-data split", __version__, options.params()) as run:
        report.run_id = run.id
        run.counts = report.to_dict
        ws.store.save_release(
            options.name, params=options.params(), counts=counts, members=records, run_id=run.id
        )
        report.seconds = time.monotonic() - started
    return report


def _check(ws: Workspace, options: SplitOptions) -> None:
    if options.rule not in RULES:
        raise VlaaError(f"unknown rule {options.rule!r} (choose from {', '.join(RULES)})")
    if options.aha_score not in ("aha", "aha_model"):
        raise VlaaError(f"unknown aha score {options.aha_score!r} (choose from aha, aha_model)")
    if options.ppl_top is not None and options.ppl_top < 0:
        raise VlaaError("--ppl-top must be 0 or more")
    parse_test_size(options.test_size)
    if not options.replace and ws.store.release_params(options.name) is not None:
        raise VlaaError(
            f"release {options.name!r} exists; pass --replace to rebuild it, or choose a new name"
        )
    sources = set(ws.store.sample_sources())
    for flag, quota in (("--rl-quota", options.rl_quota), ("--sft-quota", options.sft_quota)):
        for source, n in quota.items():
            if source not in sources:
                known = ", ".join(sorted(sources)) or "none"
                raise VlaaError(f"{flag}: no source {source!r} (sources: {known})")
            if n < 0:
                raise VlaaError(f"{flag}: {source}={n} must be 0 or more")


def parse_test_size(value: str | float) -> float:
    """``--test-size``: a count (``200``), a fraction (``0.02``) or a percentage (``2%``)."""
    text = str(value).strip()
    percent = text.endswith("%")
    try:
        size = float(text[:-1]) / 100 if percent else float(text)
    except ValueError:
        size = -1.0
    if not (0 <= size < 1 or (not percent and size >= 1 and size.is_integer())):
        raise VlaaError(
            f"--test-size {value!r}: expected a count (200), a fraction below 1 (0.02) or a "
            "percentage (2%)"
        )
    return int(size) if size >= 1 else size


def _held_out(candidates: list[_Row], options: SplitOptions) -> list[_Row]:
    """The test part: whole images, taken in seeded order while they fit the size asked for.

    For a fraction, an image is held out where its seeded draw falls below it: whether it is
    does not depend on the other samples, so a release rebuilt after more samples are verified
    keeps the test images it had (until TEST_CAP is reached), and no earlier test sample moves
    into SFT or RL.
    """
    size = parse_test_size(options.test_size)
    by_image: dict[str, list[_Row]] = defaultdict(list)
    for row in candidates:
        by_image[row.image_sha].append(row)
    draws = {sha: _order_key(options.seed, f"test:{sha}") for sha in by_image}
    ranked = sorted(by_image, key=draws.__getitem__)
    if size >= 1:
        wanted = int(size)
    else:
        ranked = [sha for sha in ranked if int(draws[sha][:13], 16) / 16**13 < size]
        wanted = TEST_CAP
    chosen: list[_Row] = []
    for image in ranked:
        if len(chosen) >= wanted:
            break
        if len(chosen) + len(by_image[image]) <= wanted:
            chosen.extend(by_image[image])
    return chosen


def _refuse_empty(
    rows: list[_Row],
    candidates: list[_Row],
    place: dict[str, tuple[str, str]],
    options: SplitOptions,
) -> None:
    """A release without samples is not saved: the name stays free and no row is left."""
    if any(split != "excluded" for split, _ in place.values()):
        return
    name = options.name
    verified = sum(row.verdict == "correct" for row in rows)
    if not verified:
        raise EmptyRelease(
            f"no sample is verified correct: nothing to put in release {name!r} "
            "(run `vlaa-data verify` first)"
        )
    if not candidates:
        raise EmptyRelease(
            f"--where kept none of the {verified} verified samples: release {name!r} would be empty"
        )
    raise EmptyRelease(
        f"release {name!r} would hold no samples: the quotas and --ppl-top left none of the "
        f"{len(candidates)} candidates"
    )


def _require_scores(candidates: list[_Row], options: SplitOptions) -> None:
    if options.rule == "aha":
        column = options.aha_score
        missing = sum(
            (r.aha_model_count if column == "aha_model" else r.aha_count) is None
            for r in candidates
        )
        if missing:
            command = "filter aha --method model" if column == "aha_model" else "filter aha"
            raise VlaaError(
                f"{missing} verified samples have no {column} score for their current text: "
                f"run `vlaa-data {command}` first"
            )
    if options.ppl_top is not None:
        missing = sum(r.ppl is None for r in candidates)
        if missing:
            raise VlaaError(
                f"--ppl-top: {missing} verified samples have no PPL score for their current "
                "text: run `vlaa-data filter ppl --model M` first"
            )


def _apply_quota(
    members: list[_Row],
    quota: Mapping[str, int],
    place: dict[str, tuple[str, str]],
    why: str,
) -> None:
    taken: dict[str, int] = defaultdict(int)
    for row in members:  # already in seeded order
        if row.source not in quota:
            continue
        if taken[row.source] >= quota[row.source]:
            place[row.id] = ("excluded", why)
        else:
            taken[row.source] += 1


def _order_key(seed: int, sample_id: str) -> str:
    return hashlib.sha256(f"{seed}:{sample_id}".encode()).hexdigest()
