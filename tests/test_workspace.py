from __future__ import annotations

from pathlib import Path

import pytest

from vlaa_data.errors import SettingsError, WorkspaceNotFound
from vlaa_data.settings import load_settings
from vlaa_data.workspace import Workspace, init_workspace


def test_init_creates_the_workspace_files(tmp_path: Path) -> None:
    root = init_workspace(tmp_path / "new")
    assert (root / "vlaa.toml").is_file()
    assert (root / "vlaa.duckdb").is_file()
    assert (root / "images").is_dir()
    assert load_settings(root / "vlaa.toml").collect.max_pixels == 50_000_000


def test_init_twice_keeps_existing_settings(tmp_path: Path) -> None:
    root = init_workspace(tmp_path / "ws")
    (root / "vlaa.toml").write_text("[collect]\nmax_pixels = 123\n")
    init_workspace(root)
    assert load_settings(root / "vlaa.toml").collect.max_pixels == 123


def test_open_without_a_workspace_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceNotFound, match="vlaa-data init"):
        Workspace.open(tmp_path, write=False)


def test_workspace_env_variable_is_the_default(tmp_path: Path, monkeypatch) -> None:
    root = init_workspace(tmp_path / "from-env")
    monkeypatch.setenv("VLAA_WORKSPACE", str(root))
    with Workspace.open(None, write=False) as ws:
        assert ws.root == root


def test_unknown_setting_is_refused_with_its_name(tmp_path: Path) -> None:
    config = tmp_path / "vlaa.toml"
    config.write_text("[collect]\nmax_pixel = 5\n")
    with pytest.raises(SettingsError, match=r"collect\.max_pixel"):
        load_settings(config)


def test_invalid_setting_value_names_the_field(tmp_path: Path) -> None:
    config = tmp_path / "vlaa.toml"
    config.write_text("[collect]\nmax_pixels = -1\n")
    with pytest.raises(SettingsError, match=r"collect\.max_pixels"):
        load_settings(config)


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    config = tmp_path / "vlaa.toml"
    config.write_text("[collect]\nmax_pixels = 100\n")
    settings = load_settings(config, environ={"VLAA_COLLECT_MAX_PIXELS": "7"})
    assert settings.collect.max_pixels == 7
    with pytest.raises(SettingsError, match=r"environment: collect\.max_pixels"):
        load_settings(config, environ={"VLAA_COLLECT_MAX_PIXELS": "lots"})


def test_broken_toml_is_a_one_line_error(tmp_path: Path) -> None:
    config = tmp_path / "vlaa.toml"
    config.write_text("[collect\n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(config)


def test_store_settings_reach_the_database(tmp_path: Path, monkeypatch) -> None:
    root = init_workspace(tmp_path / "ws")
    with Workspace.open(root, write=False) as ws:  # the default written by init
        limit = ws.store.con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
        assert limit == "953.6 MiB"  # DuckDB shows 1GB in MiB
    (root / "vlaa.toml").write_text('[store]\nmemory_limit = "512MB"\nthreads = 1\n')
    with Workspace.open(root, write=True) as ws:
        limit, threads = ws.store.con.execute(
            "SELECT current_setting('memory_limit'), current_setting('threads')"
        ).fetchone()
        assert (limit, threads) == ("488.2 MiB", 1)


def test_a_memory_limit_that_is_not_a_size_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "vlaa.toml"
    config.write_text('[store]\nmemory_limit = "lots"\n')
    with pytest.raises(SettingsError, match=r"store\.memory_limit"):
        load_settings(config)
