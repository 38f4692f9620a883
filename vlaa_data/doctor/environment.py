"""Environment checks: Python, this package, the database and HTTP client libraries, the
optional extras (read from this package's own metadata, so the list follows
``pyproject.toml``), torchvision (which must not be installed, unless vLLM needs it) and the
GPU."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from vlaa_data import __version__
from vlaa_data.doctor.checks import Check, env_check, one_line

__all__ = ["environment_checks"]

PACKAGE = "vlaa-data"
# Shown with their versions: the database, and the HTTP client the LLM steps speak through
# (the openai SDK is a declared dependency but only the tests and benchmarks import it).
_CORE_SHOWN = ("duckdb", "aiohttp")
_EXTRA_NOTES = {
    "train": "; on CPU machines pip install torch==2.13.0 first (an unpinned torch breaks here)",
    "gpu": " on a CUDA machine (it pins vllm, torch and transformers to one tested set)",
}


def environment_checks() -> list[Check]:
    """Python, versions, dependencies, extras, torchvision and the GPU."""
    checks = [env_check("python", "ok", f"{sys.version.split()[0]} ({sys.executable})")]
    try:
        requirements = _requirements()
    except metadata.PackageNotFoundError:
        return [
            *checks,
            env_check(
                PACKAGE,
                "warn",
                f"{__version__} imported from {Path(__file__).parents[2]}, not installed",
                "pip install -e . (from the repository) or pip install vlaa-data",
            ),
            _gpu(),
        ]
    checks.append(env_check(PACKAGE, "ok", __version__))
    for name in _CORE_SHOWN:
        version = _installed(name)
        if version is not None:  # a missing one is reported by the dependencies check
            checks.append(env_check(name, "ok", version))
    checks.append(_dependencies(requirements.get("", [])))
    for extra, note in _EXTRA_NOTES.items():
        checks.append(_extra(extra, requirements.get(extra, []), note))
    checks.append(_torchvision())
    checks.append(_gpu())
    return checks


def _installed(distribution: str) -> str | None:
    """The installed version of a distribution, without importing it (fast)."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _requirements() -> dict[str, list[Any]]:
    """This package's requirements by extra ("" for the core ones), from its metadata."""
    from packaging.requirements import Requirement

    by_extra: dict[str, list[Any]] = {}
    for line in metadata.requires(PACKAGE) or []:
        requirement = Requirement(line)
        marker = requirement.marker
        if marker is None or marker.evaluate({"extra": ""}):
            by_extra.setdefault("", []).append(requirement)
            continue
        for extra in _EXTRA_NOTES:
            if marker.evaluate({"extra": extra}):
                by_extra.setdefault(extra, []).append(requirement)
    return by_extra


def _unmet(requirements: Iterable[Any]) -> tuple[list[str], list[str]]:
    """(present as "name version", missing or too old as "name (why)")."""
    present, unmet = [], []
    for requirement in requirements:
        version = _installed(requirement.name)
        if version is None:
            unmet.append(f"{requirement.name} (missing)")
        elif requirement.specifier and not requirement.specifier.contains(
            version, prereleases=True
        ):
            unmet.append(f"{requirement.name} {version} (needs {requirement.specifier})")
        else:
            present.append(f"{requirement.name} {version}")
    return present, unmet


def _dependencies(requirements: list[Any]) -> Check:
    present, unmet = _unmet(requirements)
    if unmet:
        return env_check(
            "dependencies",
            "fail",
            "; ".join(unmet),
            "pip install -e . (from the repository) or pip install -U vlaa-data",
        )
    return env_check("dependencies", "ok", f"all {len(present)} installed")


def _extra(extra: str, requirements: list[Any], note: str) -> Check:
    name = f"extra {extra}"
    present, unmet = _unmet(requirements)
    if unmet:
        return env_check(name, "warn", "; ".join(unmet), f"pip install 'vlaa-data[{extra}]'{note}")
    return env_check(name, "ok", ", ".join(present))


def _torchvision() -> Check:
    if find_spec("torchvision") is None:
        return env_check("torchvision", "ok", "not installed (nothing here needs it)")
    version = _installed("torchvision") or "a version"
    vllm = _installed("vllm")
    if vllm is not None:  # vLLM pins torchvision to its torch: that pair is meant to work
        return env_check("torchvision", "ok", f"{version} (vllm {vllm} needs it)")
    return env_check(
        "torchvision",
        "warn",
        f"{version} is installed; on some torch builds it breaks `import transformers`",
        "pip uninstall torchvision",
    )


def _gpu() -> Check:
    """torch is imported only when installed: a second or two, and only then."""
    if find_spec("torch") is None:
        return env_check("gpu", "skip", "torch is not installed (the train extra)")
    try:
        import torch
    except Exception as exc:  # a broken build raises anything from OSError to AttributeError
        return env_check(
            "gpu",
            "warn",
            f"torch does not import: {one_line(exc)}",
            "reinstall torch (pip install torch==2.13.0 on CPU machines, a CUDA build on GPUs)",
        )
    if not torch.cuda.is_available():
        build = f"torch {torch.__version__}" + ("" if torch.version.cuda else ", a CPU build")
        return env_check(
            "gpu",
            "warn",
            f"no CUDA device visible ({build}): filter ppl and train run on CPU, "
            "--backend vllm not at all",
            "on a GPU machine: check nvidia-smi, CUDA_VISIBLE_DEVICES and a CUDA build of torch",
        )
    devices = []
    for index in range(torch.cuda.device_count()):
        properties = torch.cuda.get_device_properties(index)
        devices.append(f"{index}: {properties.name} ({properties.total_memory / 2**30:.0f} GiB)")
    return env_check("gpu", "ok", f"CUDA {torch.version.cuda}; " + ", ".join(devices))
