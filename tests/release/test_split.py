"""split: the paper's rule, quotas, seeds, --where, --ppl-top, the leakage guard, releases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import CliRun, query
from tests.release.conftest import build_release
from vlaa_data.errors import QueryError, VlaaError
from vlaa_data.steps.split import SplitOptions, run_split
from vlaa_data.workspace import Workspace


def _places(workspace: Path, release: str) -> dict[str, tuple[str, str]]:
    rows = query(
        workspace, "SELECT sample_id, split, why FROM release_samples WHERE release = ?", [release]
    )
    return {sample: (split, why) for sample, split, why in rows}


def _split(workspace: Path, **options) -> object:
    with Workspace.open(workspace, write=True) as ws:
        return run_split(ws, SplitOptions(**options))


def test_paper_rule_and_leakage_guard(released_workspace: Path) -> None:
    places = _places(released_workspace, "v1")
    assert {s for s, (split, _) in places.items() if split == "rl"} == {
        "clevr/c2",
        "clevr/c4",
        "clevr/c6",
        "arxiv/a2",
    }
    assert {s for s, (split, _) in places.items() if split == "sft"} == {
        "clevr/c1",
        "clevr/c5",
        "arxiv/a3",
    }
    assert places["arxiv/a1"] == ("excluded", "image_in_rl")
    assert places["clevr/c3"] == ("excluded", "not_verified")
    images = query(
        released_workspace,
        "SELECT s.image_sha FROM release_samples m JOIN samples s ON s.id = m.sample_id "
        "WHERE m.split IN ('sft', 'rl') GROUP BY 1 HAVING count(DISTINCT m.split) > 1",
    )
    assert images == []
    params = json.loads(query(released_workspace, "SELECT params FROM releases")[0][0])
    assert params["rule"] == "aha" and params["seed"] == 0


def test_same_parameters_same_release_and_seed_changes_quota_choice(
    released_workspace: Path,
) -> None:
    order = (
        "SELECT sample_id, split, position, why FROM release_samples WHERE release = ? ORDER BY 1"
    )
    _split(released_workspace, name="again")
    assert query(released_workspace, order, ["again"]) == query(released_workspace, order, ["v1"])

    chosen = set()
    for seed in range(6):
        _split(released_workspace, name=f"q{seed}", rl_quota={"clevr": 1}, seed=seed)
        places = _places(released_workspace, f"q{seed}")
        rl_clevr = [s for s, (split, _) in places.items() if split == "rl" and "clevr" in s]
        assert len(rl_clevr) == 1
        assert sum(why == "rl_quota" for _, why in places.values()) == 2
        chosen.add(rl_clevr[0])
    assert len(chosen) > 1  # the seed decides which one


def test_where_and_sft_quota(released_workspace: Path) -> None:
    report = _split(released_workspace, name="w", where="source = 'clevr'", sft_quota={"clevr": 1})
    places = _places(released_workspace, "w")
    assert places["arxiv/a2"] == ("excluded", "where")
    assert report.counts == {"sft": 1, "rl": 3}
    assert report.excluded["sft_quota"] == 1
    # arxiv/a1's image partner is excluded by --where, so nothing is in RL with it
    assert all(why != "image_in_rl" for _, why in places.values())


def test_ppl_top_keeps_the_hardest_sft_samples(released_workspace: Path) -> None:
    with pytest.raises(VlaaError, match="filter ppl"):
        _split(released_workspace, name="p", ppl_top=2)
    with Workspace.open(released_workspace, write=True) as ws:
        texts = {t.sample_id: t.result_id for t in ws.store.scored_texts()}
        ws.store.write_scores(
            [
                {
                    "sample_id": s,
                    "name": f"ppl:{m}",
                    "value": v,
                    "detail": {},
                    "result_id": texts[s],
                    "run_id": "test",
                }
                for s, base in texts.items()
                for m, v in (("a", base * 1.0), ("b", base * 3.0))
            ]
        )
    view = dict(query(released_workspace, "SELECT id, ppl FROM samples_view"))
    assert view["clevr/c1"] == pytest.approx(2.0 * texts["clevr/c1"])  # the two models' mean
    _split(released_workspace, name="p", ppl_top=2)
    places = _places(released_workspace, "p")
    sft = sorted((s for s, (split, _) in places.items() if split == "sft"), key=texts.get)
    # SFT candidates: c1, c5, a3; the two highest PPL (latest texts) stay
    assert sft == sorted(["clevr/c5", "arxiv/a3"], key=texts.get)
    assert places["clevr/c1"] == ("excluded", "ppl_top")


def test_refusals(verified_workspace: Path) -> None:
    with pytest.raises(VlaaError, match="run `vlaa-data filter aha` first"):
        _split(verified_workspace)
    build_release(verified_workspace)
    with pytest.raises(VlaaError, match="--replace"):
        _split(verified_workspace, name="v1")
    _split(verified_workspace, name="v1", replace=True)
    with pytest.raises(VlaaError, match="no source 'coco'"):
        _split(verified_workspace, name="x", rl_quota={"coco": 3})
    with pytest.raises(QueryError, match="--where"):
        _split(verified_workspace, name="x", where="1=1; DELETE FROM samples")
    assert query(verified_workspace, "SELECT count(*) FROM samples") == [(10,)]


def test_cli_split_and_status(cli: CliRun, released_workspace: Path) -> None:
    result = cli(
        "split", "--name", "v2", "--rl-quota", "arxiv=0", "--json", "-w", released_workspace
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["sft"], report["rl"]) == (3, 3)
    assert report["excluded"]["rl_quota"] == 1
    bad = cli("split", "--name", "v3", "--rl-quota", "clevr", "-w", released_workspace)
    assert bad.returncode == 1 and "SOURCE=N" in bad.stderr

    status = json.loads(cli("status", "--json", "-w", released_workspace).stdout)
    assert status["releases"] == {"v1": {"sft": 3, "rl": 4}, "v2": {"sft": 3, "rl": 3}}
    # the split step shows where the latest release put each sample
    assert status["steps"]["split"] == {"done": 6, "rejected": 4, "failed": 0, "pending": 0}
