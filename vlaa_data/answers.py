"""Ground-truth answers at collect time: option-letter normalisation and reward-type routing.

Every sample carries a reward type (``digit|choice|math|iou|open``) chosen from its adapter or,
failing that, from the shape of its answer. Choice answers are stored as a bare letter.
"""

from __future__ import annotations

import re

__all__ = [
    "infer_reward_type",
    "is_box",
    "is_prose",
    "normalise_choice",
    "split_reasoning",
]


_BARE_LETTER = re.compile(r"^\s*[(\[]?([A-Ha-h])[)\]]?\s*$")
_LETTER_WITH_TEXT = re.compile(
    r"^(?P<open>[(\[])?(?P<letter>[A-Ha-h])(?P<close>[)\]]|[.:])(?:\s+\S.*)?$", re.DOTALL
)
_INTEGER = re.compile(r"^\s*[+-]?\d{1,3}(?:,\d{3})*\s*$|^\s*[+-]?\d+\s*$")
_NUMBER = re.compile(r"^\s*[+-]?(?:\d+\.\d*|\.\d+|\d+/\d+|\d+(?:\.\d+)?e[+-]?\d+)\s*%?\s*$", re.I)
_BOX = re.compile(
    r"^\s*\[\s*([+-]?\d+(?:\.\d+)?)\s*,\s*([+-]?\d+(?:\.\d+)?)\s*,"
    r"\s*([+-]?\d+(?:\.\d+)?)\s*,\s*([+-]?\d+(?:\.\d+)?)\s*\]\s*$"
)
_FUNCTION_NAMES = {"sin", "cos", "tan", "cot", "sec", "csc", "log", "exp", "sqrt", "arcsin",
                   "arccos", "arctan", "frac", "pi"}  # fmt: skip
_MATH_MARKERS = re.compile(r"\\[a-zA-Z]+|\$|\^|[=<>≤≥]|\b(?:sqrt|pi|log|sin|cos|tan)\b|√|π|°")


def normalise_choice(answer: str) -> str | None:
    """The option letter of ``answer`` ("A", "A)", "(a)", "A. text" -> "A"), else None.

    A capital letter may stand alone or before ")", ".", ":"; a lowercase one only in a form
    that marks it as an option ("(a)", "a)"), so that words like "a dog" are never read as a.
    """
    text = re.sub(r"^\*\*(.+?)\*\*", r"\1", answer.strip())
    had_prefix = bool(re.match(r"^option\s+", text, re.IGNORECASE))
    text = re.sub(r"^option\s+", "", text, flags=re.IGNORECASE)
    bare = _BARE_LETTER.match(text)
    if bare:
        letter = bare.group(1)
        marked = had_prefix or text.startswith(("(", "[")) or text.endswith((")", "]"))
        return letter.upper() if letter.isupper() or marked else None
    match = _LETTER_WITH_TEXT.match(text)
    if not match:
        return None
    letter = match.group("letter")
    if letter.islower() and not (match.group("open") or match.group("close") in (")", "]")):
        return None
    return letter.upper()


def is_box(answer: str) -> bool:
    return bool(_BOX.match(answer))


def infer_reward_type(answer: str) -> str:
    """Route an answer by its shape: box -> iou, letter -> choice, integer -> digit, ..."""
    if is_box(answer):
        return "iou"
    if normalise_choice(answer) is not None:
        return "choice"
    if _INTEGER.match(answer):
        return "digit"
    if _NUMBER.match(answer) or (_MATH_MARKERS.search(answer) and not is_prose(answer)):
        return "math"
    return "open"


def is_prose(answer: str) -> bool:
    """Free text, not a formula: two or more words that are neither LaTeX commands nor
    function names ("It costs $5 more than the blue one", "the angle is 45° or so")."""
    text = re.sub(r"\\[a-zA-Z]+", " ", answer)
    words = [w for w in re.findall(r"[^\W\d_]{3,}", text) if w.lower() not in _FUNCTION_NAMES]
    return len(words) >= 2


def split_reasoning(text: str) -> tuple[str, str]:
    """Split an R1-style reply into (reasoning, answer).

    ``<think>…</think> answer``, or a lone ``</think>`` as self-hosted R1 writes it when the
    opening tag is part of the prompt. Without a closing tag the whole text is the answer.
    """
    head, sep, tail = text.rpartition("</think>")
    if not sep:
        return "", text.strip()
    reasoning = head.strip()
    if reasoning.startswith("<think>"):
        reasoning = reasoning[len("<think>") :].strip()
    return reasoning, tail.strip()
