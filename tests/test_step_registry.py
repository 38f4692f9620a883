"""The step table: the built-in steps, and a toy step added from another package (a
``vlaa_data.steps`` entry point) that gets a command, a settings section, a place in ``run``,
status counts and a card column without a line of vlaa-data changed."""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CliRun
from vlaa_data.errors import SettingsError
from vlaa_data.settings import StepSettings, load_settings
from vlaa_data.steps.registry import (
    StepInfo,
    card_columns,
    counted_steps,
    get_step,
    llm_steps,
    register_step,
    run_steps,
    unregister_step,
)
from vlaa_data.testing.server import ScriptedServer, default_responder

_PLUGIN = '''
"""A toy step: a short title for each distilled answer."""

from pathlib import Path

from vlaa_data.llm.templates import render
from vlaa_data.settings import StepSettings
from vlaa_data.steps.llm_step import LlmStep, Outcome
from vlaa_data.steps.registry import StepInfo, register_step


class TitleStep(LlmStep):
    name = "title"
    needs_vision = False

    def plan(self, sample, preset, params, max_pixels):
        answer = (sample.parent_output or {}).get("answer", "")
        return self.ask(sample, preset, params, render(self.template, {"answer": answer}))

    def interpret(self, sample, reply, preset):
        return Outcome("done", {"title": reply.content.strip()[:40]})


register_step(
    StepInfo(
        "title",
        kind="llm",
        summary="Give each distilled answer a short title",
        parent="distill",
        settings=StepSettings,
        default_model="gpt-4o-mini",
        prompt=Path(__file__).with_name("title.md"),
        plan=TitleStep,
        counted=True,
        card_column="titled",
    )
)
'''


@pytest.fixture
def plugin(tmp_path: Path) -> dict[str, str]:
    """A package ``toy_title`` on PYTHONPATH whose entry point registers step ``title``; the
    environment a subprocess needs to see it."""
    root = tmp_path / "plugin"
    package = root / "toy_title"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(_PLUGIN, encoding="utf-8")
    (package / "title.md").write_text("TITLE THIS ANSWER: {{answer}}\n", encoding="utf-8")
    info = root / "toy_title-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-title\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[vlaa_data.steps]\ntitle = toy_title\n")
    path = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path}


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer(default_responder) as running:
        yield running


@pytest.fixture
def toy_step() -> Iterator[StepInfo]:
    """Step ``toy`` registered in this process, after distill; removed afterwards."""
    step = register_step(
        StepInfo(
            "toy",
            kind="llm",
            summary="A toy",
            parent="distill",
            settings=StepSettings,
            default_model="gpt-4o-mini",
            plan="vlaa_data.steps.distill:DistillStep",
            counted=True,
            card_column="toyed",
        ),
        after="distill",
    )
    yield step
    unregister_step("toy")


def test_the_built_in_table_orders_the_pipeline_status_and_card() -> None:
    assert run_steps() == (
        "collect",
        "caption",
        "distill",
        "rewrite",
        "verify",
        "aha",
        "split",
        "export",
    )
    assert counted_steps() == ("collect", "caption", "distill", "rewrite", "verify", "split")
    assert llm_steps("llm") == ("caption", "distill", "rewrite")
    assert llm_steps() == ("caption", "distill", "rewrite", "verify", "aha")
    assert list(card_columns()) == [
        "collected",
        "captioned",
        "distilled",
        "rewritten",
        "verified correct",
    ]
    assert get_step("distill").parent == "caption"
    with pytest.raises(SettingsError, match=r"unknown step 'captions'; the steps are collect"):
        get_step("captions")


def test_a_registered_step_has_a_place_and_a_settings_section(
    tmp_path: Path, toy_step: StepInfo
) -> None:
    assert run_steps().index("toy") == run_steps().index("distill") + 1
    assert "toy" in counted_steps() and card_columns()["toyed"] == "toy"
    config = tmp_path / "vlaa.toml"
    config.write_text('[toy]\nmodel = "my-model"\nbudget_usd = 2\n', encoding="utf-8")
    settings = load_settings(config, environ={"VLAA_TOY_MAX_TOKENS": "64"})
    assert settings.step("toy").model == "my-model"
    assert settings.step("toy").max_tokens == 64  # the environment reaches it too
    assert load_settings(None, environ={}).step("toy").model == "gpt-4o-mini"
    config.write_text('[toi]\nmodel = "my-model"\n', encoding="utf-8")
    with pytest.raises(SettingsError, match=r"vlaa.toml: toi: Extra inputs are not permitted"):
        load_settings(config, environ={})


def test_a_step_cannot_follow_an_unknown_one_or_lack_what_it_needs() -> None:
    with pytest.raises(SettingsError, match="unknown parent step 'nope'"):
        register_step(StepInfo("x", kind="filter", summary="x", parent="nope"))
    with pytest.raises(SettingsError, match="an llm step needs a plan"):
        StepInfo("x", kind="llm", summary="x")
    with pytest.raises(SettingsError, match="settings and default_model go together"):
        StepInfo("x", kind="filter", summary="x", settings=StepSettings)
    with pytest.raises(SettingsError, match="built in"):
        unregister_step("caption")
    assert "x" not in run_steps()


def test_a_step_from_another_package_runs_everywhere(
    cli: CliRun, tmp_path: Path, plugin: dict[str, str], server: ScriptedServer
) -> None:
    shown = cli("--help", env=plugin)
    assert shown.returncode == 0 and "Give each distilled answer a short title" in shown.stdout
    helped = cli("title", "--help", env=plugin)
    assert "(default: gpt-4o-mini)" in helped.stdout and "--budget-usd" in helped.stdout

    ws = tmp_path / "ws"
    assert cli("init", ws, env=plugin).returncode == 0
    config = (ws / "vlaa.toml").read_text(encoding="utf-8")
    assert '[title]\nmodel = "gpt-4o-mini"' in config
    with (ws / "vlaa.toml").open("a", encoding="utf-8") as toml:
        toml.write('\n[[run.collect]]\nsource = "synthetic"\nlimit = 24\nseed = 1\n')

    ran = cli("run", "--base-url", server.url, "--json", "-w", ws, env=plugin)
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout)
    steps = list(report["steps"])
    assert steps.index("title") == steps.index("aha") + 1 < steps.index("split")
    title = report["steps"]["title"]
    assert title["done"] == 24 and title["pending"] == 0 and title["requests"] == 24
    prompts = [
        request["messages"][0]["content"]
        for request in server.requests
        if "TITLE THIS ANSWER" in str(request["messages"][0]["content"])
    ]
    assert len(prompts) == 24 and all(p.startswith("TITLE THIS ANSWER: ") for p in prompts)

    status = json.loads(cli("status", "--json", "-w", ws, env=plugin).stdout)
    assert status["steps"]["title"] == {"done": 24, "rejected": 0, "failed": 0, "pending": 0}
    assert report["export"], report
    card = (Path(report["export"]) / "README.md").read_text(encoding="utf-8")
    assert "| source | collected | captioned | distilled | rewritten | verified correct | " in (
        card
    )
    assert "| titled |" in card

    again = cli("title", "--json", "-w", ws, "--base-url", server.url, env=plugin)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["outcomes"] == {}  # every sample already has its title


def test_without_the_plugin_its_section_is_refused(cli: CliRun, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    assert cli("init", ws).returncode == 0
    with (ws / "vlaa.toml").open("a", encoding="utf-8") as toml:
        toml.write(textwrap.dedent('\n[title]\nmodel = "gpt-4o-mini"\n'))
    shown = cli("status", "-w", ws)
    assert shown.returncode == 1
    assert "vlaa.toml: title: Extra inputs are not permitted" in shown.stderr
