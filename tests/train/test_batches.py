"""GRPO's rollout and train batches fitted to an RL split smaller than the recipe's."""

from __future__ import annotations

import pytest

pytest.importorskip("trl")

from vlaa_data.errors import VlaaError
from vlaa_data.train.batches import fit_batches
from vlaa_data.train.config import load_config


def grpo_config(*settings: str):
    """The shipped GRPO recipe with rollout 2048 and train batch 1024 completions, 8 per
    device, unless ``settings`` say otherwise."""
    batches = ("generation_batch_size=2048", "global_batch_size=1024")
    return load_config("grpo", settings=(*batches, *settings), cuda=False, world_size=1)


def batches(config) -> tuple[int, int, int, int | None]:
    return (
        config.generation_batch_size,
        config.steps_per_generation,
        config.gradient_accumulation_steps,
        config.global_batch_size,
    )


def test_the_batches_are_left_alone_on_a_split_that_fills_a_rollout() -> None:
    config = grpo_config()
    assert batches(config) == (2048, 256, 128, 1024)
    assert fit_batches(config, 512) is None
    assert batches(config) == (2048, 256, 128, 1024)


@pytest.mark.parametrize(
    ("prompts", "fitted"),
    [
        # 4 prompts x G=4: a rollout of 16 completions, 2 micro-batches of 8; the train batch
        # keeps half the rollout: 8, one micro-batch per optimizer step.
        (4, (16, 2, 1, 8)),
        # 300 x 4 = 1200 completions, a multiple of 8; train 1024 x 1200 / 2048 = 600.
        (300, (1200, 150, 75, 600)),
        # 5 x 4 = 20: the largest multiple of lcm(8, 4) below is 16.
        (5, (16, 2, 1, 8)),
    ],
)
def test_a_small_split_scales_both_batches_down_with_a_note(prompts: int, fitted: tuple) -> None:
    config = grpo_config()
    note = fit_batches(config, prompts)
    assert batches(config) == fitted
    rollout, _, accumulation, train = fitted
    assert note == (
        f"the rl split's {prompts} prompts fill no rollout of 2048 completions: "
        f"generation_batch_size 2048 -> {rollout}, global_batch_size 1024 -> {train} "
        f"(gradient_accumulation_steps {accumulation})"
    )
    assert rollout % config.num_generations == 0
    assert rollout % config.per_device_train_batch_size == 0


def test_a_per_device_batch_that_no_rollout_can_fill_is_one_line() -> None:
    # lcm(12, 4) = 12 > 2 x 4
    config = grpo_config(
        "per_device_train_batch_size=12", "generation_batch_size=2040", "global_batch_size=240"
    )
    with pytest.raises(VlaaError) as caught:
        fit_batches(config, 2)
    assert str(caught.value) == (
        "the rl split has 2 prompts, 8 completions at num_generations 4: less than the "
        "smallest rollout, 12 completions (a multiple of num_generations and of "
        "per_device_train_batch_size 12 x 1 processes); lower per_device_train_batch_size"
    )
    assert config.generation_batch_size == 2040  # left as it was


def test_a_train_batch_that_already_fits_is_left_out_of_the_note() -> None:
    config = grpo_config("per_device_train_batch_size=4", "global_batch_size=4")
    note = fit_batches(config, 4)
    assert batches(config) == (16, 4, 1, 4)
    assert note == (
        "the rl split's 4 prompts fill no rollout of 2048 completions: "
        "generation_batch_size 2048 -> 16"
    )
