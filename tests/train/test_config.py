"""Recipes, flags and ``--set``: how a trainer config is filled."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("trl")

from vlaa_data.errors import SettingsError
from vlaa_data.train.config import (
    GrpoTrainConfig,
    SftTrainConfig,
    load_config,
    parse_setting,
)


def test_the_shipped_recipes_hold_the_papers_settings() -> None:
    sft = load_config("sft", cuda=False, world_size=1)
    assert isinstance(sft, SftTrainConfig)
    assert sft.global_batch_size == 128 and sft.num_train_epochs == 1
    assert sft.gradient_accumulation_steps == 128 // sft.per_device_train_batch_size
    assert not sft.train_vision and sft.completion_only_loss and sft.max_length is None
    assert sft.max_pixels == 256 * 32 * 32


def test_the_shipped_grpo_recipe_holds_the_papers_settings() -> None:
    """RECIPE.md's GRPO, in OpenRLHF's semantics: rollout 512 prompts x G = 4 = 2048
    completions, train batch 256 completions, hence 8 optimizer steps per rollout."""
    world = 8
    grpo = load_config("grpo", cuda=False, world_size=world)
    assert isinstance(grpo, GrpoTrainConfig)
    assert (grpo.num_generations, grpo.temperature) == (4, 0.8)
    assert grpo.generation_batch_size == 512 * 4 and grpo.global_batch_size == 256
    per_step = grpo.per_device_train_batch_size * world * grpo.gradient_accumulation_steps
    assert per_step == 256
    assert grpo.generation_batch_size // per_step == 8 and grpo.num_iterations == 1
    assert grpo.lr_scheduler_type == "cosine_with_min_lr"
    assert grpo.lr_scheduler_kwargs == {"min_lr": 5e-7} and grpo.warmup_steps == 0.03
    assert grpo.loss_type == "grpo"
    assert (grpo.beta, grpo.kl_control, grpo.kl_target, grpo.kl_horizon) == (
        1e-3,
        "adaptive",
        5e-4,
        10000,
    )
    assert grpo.beta_final is None and grpo.logging_steps == 1
    assert grpo.max_pixels == 256 * 32 * 32


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (["kl_control=annealed"], "kl_control: 'annealed' is not one of fixed, linear, adaptive"),
        (["kl_control=linear"], "beta_final goes with kl_control linear"),
        (["beta_final=5e-4"], "beta_final goes with kl_control linear"),
        (["kl_target=none"], "kl_control adaptive needs kl_target > 0"),
        (["beta=0"], "kl_control adaptive needs beta > 0"),
        (["kl_horizon=0"], "kl_horizon: must be at least 1"),
    ],
)
def test_kl_control_settings_that_do_not_fit_are_one_line(
    settings: list[str], message: str
) -> None:
    with pytest.raises(SettingsError, match=f"grpo config: {message}"):
        load_config("grpo", settings=settings, cuda=False)


def test_kl_control_linear_and_fixed() -> None:
    linear = load_config("grpo", settings=["kl_control=linear", "beta_final=5e-4"], cuda=False)
    assert (linear.kl_control, linear.beta_final) == ("linear", 5e-4)
    fixed = load_config("grpo", settings=["kl_control=fixed", "beta=0"], cuda=False)
    assert (fixed.kl_control, fixed.beta) == ("fixed", 0.0)


def test_device_defaults_bf16_on_cuda_and_cpu_without_it() -> None:
    cpu = load_config("sft", cuda=False, world_size=1)
    assert (cpu.bf16, cpu.use_cpu, cpu.report_to) == (False, True, [])
    assert load_config("sft", cuda=False, settings=["report_to=wandb"]).report_to == ["wandb"]


@pytest.mark.parametrize("suffix", [".toml", ".yaml"])
def test_a_toml_or_yaml_recipe_then_flags_then_set(tmp_path: Path, suffix: str) -> None:
    text = {
        ".toml": 'learning_rate = 3e-5\nlora = true\nlora_target_modules = ["q_proj"]\n',
        ".yaml": "learning_rate: 3.0e-5\nlora: true\nlora_target_modules: [q_proj]\n",
    }[suffix]
    recipe = tmp_path / f"recipe{suffix}"
    recipe.write_text(text)
    config = load_config(
        "sft",
        recipe,
        {"seed": 7, "learning_rate": None},  # None: the flag was not given
        ["num_train_epochs=2.5", "max_length=none", 'lr_scheduler_kwargs={"min_lr": 1e-7}'],
        cuda=False,
    )
    assert (config.learning_rate, config.lora, config.lora_target_modules) == (
        3e-5,
        True,
        ["q_proj"],
    )
    assert (config.seed, config.num_train_epochs, config.max_length) == (7, 2.5, None)
    assert config.lr_scheduler_kwargs == {"min_lr": 1e-7}


@pytest.mark.parametrize(
    ("key", "text", "value"),
    [
        ("train_vision", "true", True),
        ("lora", "no", False),
        ("lora_r", "8", 8),
        ("beta", "1e-3", 1e-3),
        ("beta_final", "none", None),
        ("lora_target_modules", "q_proj,v_proj", ["q_proj", "v_proj"]),
        ("lora_target_modules", '["q_proj"]', ["q_proj"]),
        ("lr_scheduler_type", "cosine", "cosine"),
        ("judge", "gpt-4o-mini", "gpt-4o-mini"),
    ],
)
def test_set_parses_by_the_fields_type(key: str, text: str, value: object) -> None:
    config = load_config("grpo", settings=[f"{key}={text}"], cuda=False)
    assert getattr(config, key) == value


def test_set_refuses_what_the_type_cannot_read() -> None:
    with pytest.raises(SettingsError, match=r"--set lora_r: cannot read 'eight'"):
        parse_setting("lora_r", "eight", int)
    with pytest.raises(SettingsError, match="KEY=VALUE"):
        load_config("sft", settings=["lora_r"], cuda=False)


def test_an_unknown_key_names_the_near_matches(tmp_path: Path) -> None:
    with pytest.raises(
        SettingsError, match=r"unknown .* 'learning_rat' \(did you mean learning_rate"
    ):
        load_config("sft", settings=["learning_rat=1"], cuda=False)
    recipe = tmp_path / "r.toml"
    recipe.write_text("num_generation = 4\n")
    with pytest.raises(SettingsError, match=r"r\.toml: unknown .*did you mean num_generations"):
        load_config("grpo", recipe, cuda=False)


def test_global_batch_size_sets_gradient_accumulation_for_the_world_size() -> None:
    values = {"per_device_train_batch_size": 4}
    config = load_config("sft", None, values, ["global_batch_size=64"], cuda=False, world_size=2)
    assert config.gradient_accumulation_steps == 8
    with pytest.raises(SettingsError, match="not a multiple"):
        load_config("sft", None, values, ["global_batch_size=60"], cuda=False, world_size=2)


def test_an_invalid_trl_config_is_one_line() -> None:
    with pytest.raises(SettingsError, match="grpo config: generation_batch_size"):
        load_config("grpo", settings=["generation_batch_size=12"], cuda=False, world_size=1)
