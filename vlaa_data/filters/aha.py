"""The aha-moment detector: self-reflective cues in a sample's reasoning (RECIPE.md, step 6).

The paper's rule: a sample has an aha moment when any keyword is a substring of its lowercased
distilled text. Ours counts every hit and records which keywords hit, with the match mode
(``substring``, the paper's, or ``word``: whole words only, so "check" no longer hits
"checkered") and the scope (``all``, the paper's: reasoning and answer; ``reasoning``;
``answer``) as options. The count is stored as score ``aha`` of the sample's current text.
``find_hits`` gives each occurrence's place, for the model judge (``filters.aha_model``).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from vlaa_data import __version__
from vlaa_data.errors import VlaaError
from vlaa_data.store.shards import Shard
from vlaa_data.workspace import Workspace

__all__ = [
    "MATCH_MODES",
    "PAPER_KEYWORDS",
    "SCOPES",
    "AhaOptions",
    "AhaReport",
    "Hit",
    "checked_keywords",
    "find_aha",
    "find_hits",
    "run_aha",
    "scoped_text",
]

PAPER_KEYWORDS = (
    "wait",
    "again",
    "double-check",
    "hmm",
    "mistake",
    "alternatively",
    "check",
    "i should confirm",
)
MATCH_MODES = ("substring", "word")
SCOPES = ("all", "reasoning", "answer")
_BATCH = 20_000


@dataclass
class AhaOptions:
    keywords: Sequence[str] = PAPER_KEYWORDS
    match: str = "substring"
    scope: str = "all"
    sources: Sequence[str] = ()
    command: str | None = None
    shard: Shard | None = None  # only the samples of this shard


@dataclass
class AhaReport:
    run_id: str | None = None
    scored: int = 0
    with_aha: int = 0
    keywords: Counter[str] = field(default_factory=Counter)  # samples each keyword hit
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "scored": self.scored,
            "with_aha": self.with_aha,
            "keywords": dict(self.keywords.most_common()),
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class Hit:
    """One occurrence of a keyword: ``text[offset:end]`` (case aside) is the keyword."""

    keyword: str
    offset: int
    end: int


def find_aha(text: str, keywords: Sequence[str], match: str = "substring") -> dict[str, int]:
    """Occurrences of each keyword in ``text`` (lowercased); keywords that do not occur are
    left out."""
    return {k: n for k, n in zip(keywords, _counter(keywords, match)(text), strict=True) if n}


def _counter(keywords: Sequence[str], match: str):
    patterns = _patterns(keywords, match)
    if match == "substring":  # str.count is several times faster than a pattern
        lowered = [k.lower() for k in keywords]
        return lambda text: [text.lower().count(k) for k in lowered]
    return lambda text: [len(p.findall(text.lower())) for p in patterns]


def find_hits(text: str, keywords: Sequence[str], match: str = "substring") -> list[Hit]:
    """Every occurrence of each keyword in ``text``, in order of place. An occurrence inside a
    longer keyword's ("check" in "double-check") is the same place and is left out."""
    found = []
    for keyword, pattern in zip(keywords, _patterns(keywords, match), strict=True):
        # Matched without lowering the text, so that offsets are offsets into ``text``.
        found += [Hit(keyword, m.start(), m.end()) for m in pattern.finditer(text)]
    found.sort(key=lambda h: (h.offset, -h.end))
    hits: list[Hit] = []
    for hit in found:
        if not hits or hit.end > hits[-1].end:
            hits.append(hit)
    return hits


def _patterns(keywords: Sequence[str], match: str) -> list[re.Pattern[str]]:
    if match not in MATCH_MODES:
        raise VlaaError(f"unknown match mode {match!r} (choose from {', '.join(MATCH_MODES)})")
    lowered = [re.escape(k.lower()) for k in keywords]
    if match == "substring":
        return [re.compile(k, re.IGNORECASE) for k in lowered]
    # Whole words: no letter, digit or underscore on either side, so "check" hits "check," and
    # "(check)" but not "checkered" or "checking".
    return [re.compile(rf"(?<![\w]){k}(?![\w])", re.IGNORECASE) for k in lowered]


def checked_keywords(options: AhaOptions) -> list[str]:
    """The keywords to look for; raises if scope, match or the keywords are unusable."""
    if options.scope not in SCOPES:
        raise VlaaError(f"unknown scope {options.scope!r} (choose from {', '.join(SCOPES)})")
    keywords = [k.strip() for k in options.keywords if k.strip()]
    if not keywords:
        raise VlaaError("no keywords given")
    _patterns(keywords, options.match)
    return keywords


def scoped_text(reasoning: str, response: str, scope: str) -> str:
    """The text ``scope`` names: offsets of hits are offsets into it."""
    if scope == "reasoning":
        return reasoning
    if scope == "answer":
        return response
    return f"{reasoning}\n{response}"


def run_aha(ws: Workspace, options: AhaOptions) -> AhaReport:
    """Score every sample with a current text; a rerun with other options replaces the scores."""
    keywords = checked_keywords(options)
    count = _counter(keywords, options.match)
    settings = {"keywords": keywords, "match": options.match, "scope": options.scope}
    if options.shard is not None:
        settings["shard"] = str(options.shard)
    report = AhaReport()
    started = time.monotonic()
    with ws.store.run(options.command or "vlaa-data filter aha", __version__, settings) as run:
        report.run_id = run.id
        run.counts = report.to_dict
        try:
            batches = ws.store.iter_scored_texts(
                sources=options.sources, shard=options.shard, batch=_BATCH
            )
            for texts in batches:
                rows = []
                for text in texts:
                    counts = count(scoped_text(text.reasoning, text.response, options.scope))
                    hits = {k: n for k, n in zip(keywords, counts, strict=True) if n}
                    report.keywords.update(hits.keys())
                    report.with_aha += bool(hits)
                    rows.append(
                        {
                            "sample_id": text.sample_id,
                            "name": "aha",
                            "value": float(sum(hits.values())),
                            "detail": {
                                "keywords": hits,
                                "match": options.match,
                                "scope": options.scope,
                            },
                            "result_id": text.result_id,
                            "run_id": report.run_id,
                        }
                    )
                ws.store.write_scores(rows)
                report.scored += len(rows)
        finally:
            report.seconds = time.monotonic() - started
    return report
