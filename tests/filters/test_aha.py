"""The aha detector on hand-labelled traces, and the scores the filter stores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import CliRun, query
from tests.release.conftest import build_verified_workspace
from vlaa_data.errors import VlaaError
from vlaa_data.filters.aha import PAPER_KEYWORDS, AhaOptions, find_aha, run_aha
from vlaa_data.workspace import Workspace

# (trace, hits in substring mode, hits in word mode), labelled by hand
TRACES = [
    ("There are 3 cubes. Wait, one is hidden: 4.", {"wait": 1}, {"wait": 1}),
    (
        "Let me double-check the sum.",
        {"double-check": 1, "check": 1},
        {"double-check": 1, "check": 1},
    ),
    ("The checkered floor has 2 balls.", {"check": 1}, {}),
    ("Awaiting nothing, the answer is 5.", {"wait": 1}, {}),
    ("Hmmm. Count again, and AGAIN.", {"hmm": 1, "again": 2}, {"again": 2}),
    (
        "I made a mistake; alternatively use the area.",
        {"mistake": 1, "alternatively": 1},
        {"mistake": 1, "alternatively": 1},
    ),
    ("I should confirm the label reads B.", {"i should confirm": 1}, {"i should confirm": 1}),
    ("The triangle has three sides, so 3.", {}, {}),
]


@pytest.mark.parametrize(("text", "substring", "word"), TRACES)
def test_detector_modes(text: str, substring: dict, word: dict) -> None:
    assert find_aha(text, PAPER_KEYWORDS, "substring") == substring
    assert find_aha(text, PAPER_KEYWORDS, "word") == word


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(VlaaError, match="unknown match mode"):
        find_aha("wait", PAPER_KEYWORDS, "regex")


def _scores(workspace: Path) -> dict[str, tuple[float, dict]]:
    rows = query(workspace, "SELECT sample_id, value, detail FROM scores WHERE name = 'aha'")
    return {sample: (value, json.loads(detail)) for sample, value, detail in rows}


def test_filter_stores_counts_and_keywords(workspace: Path, tmp_path: Path) -> None:
    build_verified_workspace(workspace, tmp_path)
    with Workspace.open(workspace, write=True) as ws:
        report = run_aha(ws, AhaOptions())
    assert (report.scored, report.with_aha) == (10, 4)
    scores = _scores(workspace)
    assert scores["clevr/c2"][0] == 2  # "Wait, count again"
    assert scores["clevr/c2"][1]["keywords"] == {"wait": 1, "again": 1}
    assert scores["clevr/c1"][0] == 0
    view = dict(query(workspace, "SELECT id, aha_count FROM samples_view"))
    assert view["clevr/c2"] == 2 and view["arxiv/a2"] == 1

    # scope: the answer alone holds no keyword; a rerun replaces the scores
    with Workspace.open(workspace, write=True) as ws:
        report = run_aha(ws, AhaOptions(scope="answer"))
    assert report.with_aha == 0
    assert {value for value, _ in _scores(workspace).values()} == {0}
    assert query(workspace, "SELECT count(*) FROM scores") == [(10,)]


def test_filter_cli_with_own_keywords(cli: CliRun, workspace: Path, tmp_path: Path) -> None:
    build_verified_workspace(workspace, tmp_path)
    result = cli(
        "filter", "aha", "--keywords", "cubes,axis", "--match", "word", "--json", "-w", workspace
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["keywords"] == {"cubes": 1, "axis": 1}
    assert report["with_aha"] == 2
    bad = cli("filter", "aha", "--scope", "question", "-w", workspace)
    assert bad.returncode == 1 and "unknown scope" in bad.stderr
