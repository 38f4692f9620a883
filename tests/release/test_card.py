"""The dataset card of release ``v1`` (see ``conftest.py``): metadata, counts, plots, secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard
from PIL import Image

from vlaa_data.errors import SettingsError, VlaaError
from vlaa_data.release.card import card_facts, size_category, write_card
from vlaa_data.workspace import Workspace

CONFIGS = {
    "configs": [
        {
            "config_name": "default",
            "data_files": [
                {"split": "sft", "path": "data/sft-*.parquet"},
                {"split": "rl", "path": "data/rl-*.parquet"},
            ],
        }
    ]
}
PLOTS = ("assets/reasoning_length.png", "assets/sources.png")


def render(workspace: Path, out: Path, **options) -> str:
    with Workspace.open(workspace, write=False) as ws:
        path = write_card(ws, "v1", out, **options)
    assert path == out / "README.md"
    return path.read_text(encoding="utf-8")


def test_metadata_parses_and_keeps_the_configs(released_workspace: Path, tmp_path: Path):
    text = render(released_workspace, tmp_path / "hf", configs=CONFIGS, repo_id="me/vlaa-v1")
    data = DatasetCard(text).data.to_dict()
    assert data["configs"] == CONFIGS["configs"]
    assert data["license"] == "other"
    assert data["task_categories"] == ["visual-question-answering", "image-text-to-text"]
    assert data["size_categories"] == ["n<1K"]
    assert set(data["tags"]) == {"reasoning", "multimodal", "r1", "vlaa-thinking", "synthetic"}
    assert 'load_dataset("me/vlaa-v1")' in text
    assert 'sft = ds["sft"]' in text and 'rl = ds["rl"]' in text
    assert "arXiv:2504.11468" in text and "Chen, Hardy" in text
    assert "vlaa-data 0.1.0" in text


def test_counts_methods_and_aha_rate(released_workspace: Path, tmp_path: Path):
    with Workspace.open(released_workspace, write=False) as ws:
        facts = card_facts(ws, "v1")
    assert facts.per_source == {
        "arxiv": {"collected": 4, "captioned": 4, "distilled": 4, "rewritten": 4,
                  "verified correct": 3, "sft": 1, "rl": 1, "test": 0},
        "clevr": {"collected": 6, "captioned": 6, "distilled": 6, "rewritten": 6,
                  "verified correct": 5, "sft": 2, "rl": 3, "test": 0},
    }  # fmt: skip
    assert facts.verify_methods == {"choice": 2, "digit": 5}
    assert (facts.aha_rows, facts.total) == (4, 7)  # every RL sample, no SFT one
    text = render(released_workspace, tmp_path / "hf")
    header = "| source | collected | captioned | distilled | rewritten | verified correct |"
    assert f"{header} SFT | RL | test |" in text
    assert "| clevr | 6 | 6 | 6 | 6 | 5 | 2 | 3 | 0 |" in text
    assert "| arxiv | 4 | 4 | 4 | 4 | 3 | 1 | 1 | 0 |" in text
    assert "**3** SFT samples, **4** RL samples and **0** held-out" in text
    assert "| digit | 5 |" in text and "| choice | 2 |" in text
    assert "**57.1%**" in text and "(4 of 7)" in text
    assert '"rule": "aha"' in text  # the release's parameters


def test_plots_are_valid_linked_and_deterministic(released_workspace: Path, tmp_path: Path):
    text = render(released_workspace, tmp_path / "a")
    render(released_workspace, tmp_path / "b")
    for plot in PLOTS:
        assert f"]({plot})" in text
        first, second = tmp_path / "a" / plot, tmp_path / "b" / plot
        with Image.open(first) as image:
            assert image.format == "PNG" and image.size == (640, 360)
        assert b"Software" not in first.read_bytes()
        assert first.read_bytes() == second.read_bytes()
    assert (tmp_path / "a/README.md").read_bytes() == (tmp_path / "b/README.md").read_bytes()


def test_columns_come_from_the_exported_files(released_workspace: Path, tmp_path: Path):
    out = tmp_path / "hf"
    (out / "data").mkdir(parents=True)
    messages = [[{"role": "user", "content": "q"}]]
    table = pa.table({"image": [b"x"], "messages": messages, "solution": ["3"]})
    pq.write_table(table, out / "data" / "sft-00000-of-00001.parquet")
    text = render(released_workspace, out)
    assert "- `messages` (list): system, user" in text
    assert "- `image` (binary)" in text
    assert "- `solution` (string): the ground-truth answer" in text
    assert "`image_sha`" not in text  # not a column of these files


def test_json_export_lists_its_files(released_workspace: Path, tmp_path: Path):
    out = tmp_path / "sharegpt"
    out.mkdir()
    (out / "dataset_info.json").write_text(json.dumps({"v1_sft": {"file_name": "v1_sft.json"}}))
    (out / "v1_sft.json").write_text(json.dumps([{"messages": [], "images": ["a.png"]}]))
    text = render(released_workspace, out, fmt="sharegpt", repo_id="me/r")
    assert "- `v1_sft.json`" in text and "snapshot_download" in text
    assert "- `messages` (list)" in text and "- `images` (list)" in text
    assert "`v1_sft` " not in text and "load_dataset(" not in text


def test_models_and_prompt_hashes_of_the_release(released_workspace: Path, tmp_path: Path):
    with Workspace.open(released_workspace, write=True) as ws:
        sample = ws.store.release_rows("v1", "rl")[0].sample_id
        ws.store.con.execute(
            "INSERT INTO results (id, sample_id, step, attempt, status, model, prompt_hash, "
            "run_id) VALUES (?, ?, 'caption', 9, 'failed', 'gpt-4o', 'abc123', 'r')",
            [ws.store.allocate_result_ids(1)[0], sample],
        )
    text = render(released_workspace, tmp_path / "hf")
    assert "| caption | gpt-4o | abc123 | 1 |" in text


def test_a_secret_never_reaches_the_card(released_workspace, tmp_path, monkeypatch):
    secret = "hf_notARealTokenButLongEnough"
    monkeypatch.setenv("HF_TOKEN", secret)
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-another-secret-value")
    assert secret not in render(released_workspace, tmp_path / "a")
    with Workspace.open(released_workspace, write=True) as ws:  # a secret pasted into --where
        ws.store.con.execute(
            "UPDATE releases SET params = ? WHERE name = 'v1'",
            [json.dumps({"where": "source = 'sk-another-secret-value'"})],
        )
    with pytest.raises(VlaaError, match="secret"):
        render(released_workspace, tmp_path / "b")
    assert not (tmp_path / "b" / "README.md").exists()


def test_unknown_release_is_a_one_line_error(released_workspace: Path, tmp_path: Path):
    message = "no release 'v9' \\(releases: v1\\)"
    with (
        Workspace.open(released_workspace, write=False) as ws,
        pytest.raises(VlaaError, match=message),
    ):
        write_card(ws, "v9", tmp_path)


@pytest.mark.parametrize(
    ("n", "label"), [(0, "n<1K"), (999, "n<1K"), (1_000, "1K<n<10K"), (151_608, "100K<n<1M")]
)
def test_size_category(n: int, label: str):
    assert size_category(n) == label


def _settings(workspace: Path, lines: str) -> None:
    """Set ``lines`` in the ``[release]`` section of the workspace's vlaa.toml."""
    config = workspace / "vlaa.toml"
    text = config.read_text(encoding="utf-8")
    assert "\n[release]\n" in text  # init writes the section, its keys commented out
    config.write_text(text.replace("\n[release]\n", f"\n[release]\n{lines}"), encoding="utf-8")


def test_the_license_comes_from_the_release_settings(
    released_workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _settings(released_workspace, 'license = "cc-by-4.0"\n')
    text = render(released_workspace, tmp_path / "a", configs=CONFIGS)
    data = DatasetCard(text).data.to_dict()
    assert data["license"] == "cc-by-4.0"
    assert "license_name" not in data and "license_link" not in data
    assert "Released under `cc-by-4.0`" in text
    assert data["configs"] == CONFIGS["configs"]
    monkeypatch.setenv("VLAA_RELEASE_LICENSE", "apache-2.0")  # the environment overrides
    assert DatasetCard(render(released_workspace, tmp_path / "b")).data.license == "apache-2.0"


def test_a_license_the_hub_has_no_id_for(released_workspace: Path, tmp_path: Path) -> None:
    _settings(
        released_workspace,
        'license = "other"\nlicense_name = "vlaa-research-only"\n'
        'license_link = "https://example.com/LICENSE"\n',
    )
    text = render(released_workspace, tmp_path / "hf")
    front = text.split("---\n")[1]
    assert front.startswith(
        "license: other\nlicense_name: vlaa-research-only\n"
        "license_link: https://example.com/LICENSE\n"
    )
    data = DatasetCard(text).data.to_dict()
    assert (data["license"], data["license_name"], data["license_link"]) == (
        "other",
        "vlaa-research-only",
        "https://example.com/LICENSE",
    )
    assert "Released under `vlaa-research-only` (https://example.com/LICENSE)" in text


def test_a_license_name_needs_license_other(released_workspace: Path) -> None:
    _settings(released_workspace, 'license = "mit"\nlicense_name = "mine"\n')
    with pytest.raises(SettingsError, match=r"release\.license_name: .*license = \"other\""):
        Workspace.open(released_workspace, write=False)
