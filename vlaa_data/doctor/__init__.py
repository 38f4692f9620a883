"""``vlaa-data doctor``: what stands between this machine and a working pipeline, and the fix.

Each check is a ``Check`` (a name, ``ok|warn|fail|skip``, what was found, and a one-line fix)
so that the CLI only prints, and a script or CI job can act on the same verdicts through
``run_doctor(...).to_dict()``. Three groups, one module each:

- ``environment``: Python, this package, its dependencies and extras, torchvision, the GPU;
- ``workspace``: the directory, ``vlaa.toml``, the writer lock, the reply journal and
  the database, opened read-only;
- ``endpoints``: each LLM step's preset, the API key variables and each distinct endpoint's
  ``GET /models``.

Doctor never writes to the workspace, and a key is only ever shown as its variable's name and
``set`` or ``missing``: every detail is scrubbed of the keys it read, in case an endpoint
echoes one back.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlaa_data.doctor.checks import STATUSES, Check, Status, llm_check
from vlaa_data.doctor.endpoints import PROBE_TIMEOUT_S, model_checks
from vlaa_data.doctor.environment import environment_checks
from vlaa_data.doctor.workspace import workspace_checks
from vlaa_data.workspace import CONFIG_NAME, resolve_root

__all__ = [
    "PROBE_TIMEOUT_S",
    "STATUSES",
    "Check",
    "DoctorReport",
    "Status",
    "environment_checks",
    "model_checks",
    "run_doctor",
    "workspace_checks",
]


@dataclass
class DoctorReport:
    """All checks, in the order they ran; the CLI exits 1 when any ``failed``."""

    root: Path
    checks: list[Check] = field(default_factory=list)

    @property
    def failed(self) -> list[Check]:
        return [check for check in self.checks if check.status == "fail"]

    def counts(self) -> dict[str, int]:
        return {status: sum(c.status == status for c in self.checks) for status in STATUSES}

    def to_dict(self) -> dict[str, Any]:
        return {
            "workspace": str(self.root),
            "healthy": not self.failed,
            "summary": self.counts(),
            "checks": [check.to_dict() for check in self.checks],
        }


def run_doctor(
    workspace: str | os.PathLike[str] | None = None,
    *,
    offline: bool = False,
    base_url: str | None = None,
    api_key_env: str | None = None,
    timeout_s: float = PROBE_TIMEOUT_S,
    environ: Mapping[str, str] | None = None,
) -> DoctorReport:
    """Run every check. The environment and model checks run even outside a workspace (then
    with the default settings), so a fresh machine learns which keys it needs."""
    environ = os.environ if environ is None else environ
    root = resolve_root(workspace)
    report = DoctorReport(root)
    report.checks += environment_checks()
    workspace_found, settings = workspace_checks(root, environ)
    report.checks += workspace_found
    if settings is None:
        report.checks.append(
            llm_check("presets", "skip", f"not checked: {CONFIG_NAME} must load first")
        )
    else:
        report.checks += model_checks(
            settings,
            offline=offline,
            base_url=base_url,
            api_key_env=api_key_env,
            timeout_s=timeout_s,
            environ=environ,
        )
    return report
