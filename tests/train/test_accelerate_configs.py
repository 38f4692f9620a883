"""The shipped ``accelerate launch --config_file`` configs: read by accelerate itself, and
shipped in the package."""

from __future__ import annotations

import fnmatch
import sys
from pathlib import Path

import pytest

import vlaa_data

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

pytest.importorskip("accelerate")

PACKAGE = Path(vlaa_data.__file__).resolve().parent
CONFIGS = PACKAGE / "recipes" / "accelerate"


def test_the_zero3_config_is_deepspeed_stage_3_in_bf16() -> None:
    from accelerate.commands.config.config_args import ClusterConfig

    config = ClusterConfig.from_yaml_file(str(CONFIGS / "zero3.yaml"))
    assert config.distributed_type == "DEEPSPEED"
    assert config.deepspeed_config["zero_stage"] == 3
    assert config.deepspeed_config["zero3_save_16bit_model"] is True  # a loadable output dir
    assert config.mixed_precision == "bf16"
    assert "--vllm colocate" in (CONFIGS / "zero3.yaml").read_text(encoding="utf-8")


def test_the_fsdp_config_is_fsdp2_saving_a_full_state_dict() -> None:
    from accelerate.commands.config.config_args import ClusterConfig

    config = ClusterConfig.from_yaml_file(str(CONFIGS / "fsdp.yaml"))
    assert config.distributed_type == "FSDP"
    assert config.fsdp_config["fsdp_version"] == 2
    assert config.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"


def test_every_shipped_config_is_package_data() -> None:
    pyproject = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["vlaa_data"]
    files = [path.relative_to(PACKAGE).as_posix() for path in CONFIGS.glob("*")]
    assert sorted(files) == ["recipes/accelerate/fsdp.yaml", "recipes/accelerate/zero3.yaml"]
    for name in files:
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name
