"""split: the held-out test part, the paper's rule, quotas, seeds, --where, --ppl-top, the
leakage guard, releases, and no release without samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import CliRun, query
from tests.release.conftest import build_release
from vlaa_data.errors import EmptyRelease, QueryError, VlaaError
from vlaa_data.steps import split as split_step
from vlaa_data.steps.split import SplitOptions, parse_test_size, run_split
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
    assert report.counts == {"sft": 1, "rl": 3, "test": 0}
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
    result = cli("split", "v2", "--rl-quota", "arxiv=0", "--json", "-w", released_workspace)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["sft"], report["rl"], report["test"]) == (3, 3, 0)
    assert report["excluded"]["rl_quota"] == 1
    bad = cli("split", "v3", "--rl-quota", "clevr", "-w", released_workspace)
    assert bad.returncode == 1 and "SOURCE=N" in bad.stderr
    # --name, the old form, still works; a name given twice over must agree
    old = cli("split", "--name", "v3", "--test-size", "2", "--json", "-w", released_workspace)
    assert old.returncode == 0, old.stderr
    v3 = {split: json.loads(old.stdout)[split] for split in ("sft", "rl", "test")}
    assert v3["test"] == 2
    both = cli("split", "v4", "--name", "v5", "-w", released_workspace)
    assert both.returncode == 1
    assert both.stderr.strip() == "error: two names given: 'v4' and --name 'v5'"

    status = json.loads(cli("status", "--json", "-w", released_workspace).stdout)
    assert status["releases"] == {
        "v1": {"sft": 3, "rl": 4, "test": 0},
        "v2": {"sft": 3, "rl": 3, "test": 0},
        "v3": v3,
    }

    # the split step shows where the latest release put each sample: v3's test part is done
    assert status["steps"]["split"] == {
        "done": sum(v3.values()), "rejected": 10 - sum(v3.values()), "failed": 0, "pending": 0
    }  # fmt: skip


def _test_part(workspace: Path, release: str) -> set[str]:
    return {s for s, (split, _) in _places(workspace, release).items() if split == "test"}


def test_a_held_out_test_part_by_whole_images(released_workspace: Path) -> None:
    """Eight candidates; arxiv/a1 shares clevr/c2's image, so those two go together."""
    report = _split(released_workspace, name="t", test_size=3)
    places = _places(released_workspace, "t")
    test = _test_part(released_workspace, "t")
    assert report.counts["test"] == len(test) == 3
    assert all(places[s] == ("test", "held_out") for s in test)
    images = query(
        released_workspace,
        "SELECT s.image_sha FROM release_samples m JOIN samples s ON s.id = m.sample_id "
        "WHERE m.release = 't' AND m.split <> 'excluded' GROUP BY 1 "
        "HAVING count(DISTINCT m.split) > 1",
    )
    assert images == []  # no image of the test part is in SFT or RL
    assert report.counts["sft"] + report.counts["rl"] + 3 <= 8
    _split(released_workspace, name="t2", test_size=3)
    assert _test_part(released_workspace, "t2") == test  # the same seed, the same part

    parts = []
    for seed in range(8):
        _split(released_workspace, name=f"s{seed}", test_size=3, seed=seed)
        parts.append(_test_part(released_workspace, f"s{seed}"))
    assert len({frozenset(part) for part in parts}) > 1  # the seed decides which
    assert all(len(part) == 3 for part in parts)
    with_pair = [part for part in parts if {"clevr/c2", "arxiv/a1"} & part]
    assert with_pair and all({"clevr/c2", "arxiv/a1"} <= part for part in with_pair)


def test_the_test_part_s_size(released_workspace: Path, monkeypatch) -> None:
    """A fraction holds out each image whose seeded draw is below it, whatever the other
    samples: a release of fewer samples holds out the same images among them."""
    images = dict(query(released_workspace, "SELECT id, image_sha FROM samples"))

    def draw(sample_id: str) -> float:
        return int(split_step._order_key(0, f"test:{images[sample_id]}")[:13], 16) / 16**13

    _split(released_workspace, name="h", test_size=0.5)
    half = _test_part(released_workspace, "h")
    candidates = set(images) - {"clevr/c3", "arxiv/a4"}  # the two not verified correct
    assert half == {s for s in candidates if draw(s) < 0.5} and 0 < len(half) < 8
    _split(released_workspace, name="clevr", test_size=0.5, where="source = 'clevr'")
    assert _test_part(released_workspace, "clevr") == {s for s in half if s.startswith("clevr")}
    expected = {s for s in candidates if draw(s) < 0.02}  # the default
    assert _split(released_workspace, name="d").counts["test"] == len(expected)
    assert _split(released_workspace, name="z", test_size=0).counts["test"] == 0
    monkeypatch.setattr(split_step, "TEST_CAP", 1)
    assert _split(released_workspace, name="c", test_size=0.99).counts["test"] == 1  # capped
    assert _split(released_workspace, name="n", test_size=5).counts["test"] == 5  # a count is not
    assert (parse_test_size("2%"), parse_test_size("200"), parse_test_size(0.1)) == (
        0.02,
        200,
        0.1,
    )
    for bad in ("abc", "1.5", "-1", "100%", "", "inf", "nan"):
        with pytest.raises(VlaaError, match="--test-size"):
            parse_test_size(bad)


def test_nothing_to_release_leaves_no_release(verified_workspace: Path, workspace: Path) -> None:
    with pytest.raises(EmptyRelease, match="--where kept none of the 8 verified samples"):
        _split(verified_workspace, name="v1", rule="pass", where="source = 'nowhere'")
    assert query(verified_workspace, "SELECT count(*) FROM releases") == [(0,)]
    assert query(verified_workspace, "SELECT count(*) FROM release_samples") == [(0,)]
    assert _split(verified_workspace, name="v1", rule="pass").counts["sft"] == 8  # name free
    with pytest.raises(EmptyRelease, match="the quotas and --ppl-top left none"):
        _split(verified_workspace, name="q", rule="pass", sft_quota={"clevr": 0, "arxiv": 0})
    assert query(verified_workspace, "SELECT name FROM releases") == [("v1",)]


def test_cli_split_with_nothing_verified_is_one_line(cli: CliRun, workspace: Path) -> None:
    result = cli("split", "v1", "-w", workspace)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: no sample is verified correct: nothing to put in release 'v1' "
        "(run `vlaa-data verify` first)"
    ]
    assert query(workspace, "SELECT count(*) FROM releases") == [(0,)]
    assert query(workspace, "SELECT count(*) FROM runs WHERE command LIKE '%split%'") == [(0,)]
    nameless = cli("split", "-w", workspace)
    assert nameless.returncode == 1
    assert nameless.stderr.strip() == "error: name the release: vlaa-data split NAME"
