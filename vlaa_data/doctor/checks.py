"""The verdict every doctor check returns, its group constructors, and the text helpers they
share (one-line messages, scrubbing keys out of a verdict)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Literal

__all__ = [
    "STATUSES",
    "Check",
    "Status",
    "env_check",
    "llm_check",
    "one_line",
    "scrub",
    "ws_check",
]

Status = Literal["ok", "warn", "fail", "skip"]
STATUSES: tuple[Status, ...] = ("ok", "warn", "fail", "skip")

# Keys shorter than this are not scrubbed from details: replacing "x" everywhere would garble
# the report, and a one-letter "key" is a placeholder for a server that checks none.
_MIN_SCRUBBED_KEY = 6


@dataclass(frozen=True)
class Check:
    """One verdict. ``fix`` is a one-line instruction, empty when there is nothing to do."""

    group: str
    name: str
    status: Status
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def env_check(name: str, status: Status, detail: str, fix: str = "") -> Check:
    return Check("environment", name, status, detail, fix)


def ws_check(name: str, status: Status, detail: str, fix: str = "") -> Check:
    return Check("workspace", name, status, detail, fix)


def llm_check(name: str, status: Status, detail: str, fix: str = "") -> Check:
    return Check("models", name, status, detail, fix)


def one_line(value: object) -> str:
    """An exception or message as one line: type and text, whitespace collapsed."""
    text = f"{type(value).__name__}: {value}" if isinstance(value, BaseException) else str(value)
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:299] + "…"


def scrub(check: Check, secrets: Iterable[str]) -> Check:
    """``check`` with each key in ``secrets`` replaced by ``***`` in its detail and fix."""
    detail, fix = check.detail, check.fix
    for secret in secrets:
        if len(secret) >= _MIN_SCRUBBED_KEY:
            detail, fix = detail.replace(secret, "***"), fix.replace(secret, "***")
    return dataclasses.replace(check, detail=detail, fix=fix)
