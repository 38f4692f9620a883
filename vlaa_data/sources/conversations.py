"""What the dataset adapters share besides the row loop: LLaVA-style conversations and final
answers. LLaVA-style rows hold ``conversations``:
``[{"from": "human", "value": "<image>\\n..."}, {"from": "gpt", "value": "..."}]``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from vlaa_data.answers import normalise_choice
from vlaa_data.sources.row_adapter import MalformedRow

__all__ = [
    "answer_line",
    "as_choice",
    "boxed",
    "final_answer",
    "first_exchange",
    "image_name",
    "strip_image_token",
]

_HUMAN = ("human", "user")
_GPT = ("gpt", "assistant")
_IMAGE_TOKEN = re.compile(r"^(?:\s*<image>)+\s*|\s*(?:<image>\s*)+$")
# Greedy ".*" first, so the match is the last "Answer:" of the text, even within one line.
_LAST_ANSWER = re.compile(r".*\banswer\s*[:：]\s*([^\n]*)", re.IGNORECASE | re.DOTALL)


def image_name(value: Any) -> str | None:
    """The file name of an image column value (a path or ``{"bytes", "path"}``), if it has one."""
    if isinstance(value, Mapping):
        value = value.get("path")
    if not isinstance(value, str):
        return None
    return PurePosixPath(value.replace("\\", "/")).name or None


def strip_image_token(text: Any) -> Any:
    """The text without the ``<image>`` tokens LLaVA puts at its start (or end)."""
    return _IMAGE_TOKEN.sub("", text) if isinstance(text, str) else text


def first_exchange(row: Mapping[str, Any], column: str = "conversations") -> tuple[Any, Any]:
    """The first human turn (``<image>`` stripped) and the gpt turn that answers it."""
    turns = row.get(column)
    if not isinstance(turns, list) or not turns:
        raise MalformedRow(f"{column!r} is missing or not a list of turns")
    speakers = [t.get("from", t.get("role")) if isinstance(t, Mapping) else None for t in turns]
    human = next((i for i, who in enumerate(speakers) if who in _HUMAN), None)
    if human is None:
        raise MalformedRow(f"{column!r} has no human turn")
    gpt = next((i for i in range(human + 1, len(turns)) if speakers[i] in _GPT), None)
    if gpt is None:
        raise MalformedRow(f"{column!r} has no gpt turn after the human turn")
    return strip_image_token(turns[human].get("value")), turns[gpt].get("value")


def boxed(text: Any) -> str | None:
    """The content of the last ``\\boxed{...}`` (braces may nest), else None."""
    if not isinstance(text, str) or (start := text.rfind("\\boxed{")) < 0:
        return None
    depth, begin = 0, start + len("\\boxed{")
    for end in range(begin, len(text)):
        if text[end] == "{":
            depth += 1
        elif text[end] == "}":
            if depth == 0:
                return text[begin:end].strip()
            depth -= 1
    return None


def answer_line(text: Any) -> str | None:
    """What follows the last ``Answer:`` on its line (one trailing full stop dropped)."""
    match = _LAST_ANSWER.match(text) if isinstance(text, str) else None
    tail = match.group(1).strip() if match else ""
    return tail.removesuffix(".").strip() or None


def final_answer(text: Any) -> str | None:
    """The final answer written in a solution: a ``\\boxed{}``, else an ``Answer:`` line."""
    return boxed(text) or answer_line(text)


def as_choice(answer: Any, otherwise: str | None) -> tuple[Any, str | None]:
    """``(letter, "choice")`` when ``answer`` names an option, else ``(answer, otherwise)``."""
    letter = normalise_choice(answer) if isinstance(answer, str) else None
    return (letter, "choice") if letter else (answer, otherwise)
