"""Reading the final answer out of a completion, never out of its reasoning.

A completion is split into reasoning and answer region first: a separate reasoning field
(``reasoning_content``) is reasoning; in the text, everything up to the last ``</think>`` is
reasoning, and an opened ``<think>`` that never closes makes the whole text reasoning (a
truncated trace has no answer). The answer region is the content of the last complete
``<answer>…</answer>`` after the reasoning, else the text after ``</think>``, else the whole
text when it has no tags at all. Several answer blocks earn nothing more: only the last counts.

Within the region, ``final_answer`` prefers the last ``\\boxed{…}`` (nested braces kept), then
the last "Answer: X" / "**Answer:** X" / "The answer is X" phrase, then the region itself.
The typed readers (``read_choice``, ``read_number``, ``read_box``) work on that string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vlaa_data.answers import normalise_choice

__all__ = [
    "Split",
    "final_answer",
    "read_box",
    "read_choice",
    "read_number",
    "split_completion",
]

_ANSWER_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_ANSWER_OPEN = re.compile(r"<answer>", re.IGNORECASE)
_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
# "Answer: X", "**Answer:** X", "**Answer**: X", "Final answer: X", "The (final) answer is X".
_PHRASE = re.compile(
    r"(?:\*\*|__)?\b(?:final\s+)?answer(?:\*\*|__)?\s*[:：](?:\*\*|__)?\s*(?P<a>[^\n]+)"
    r"|\bthe\s+(?:final\s+|correct\s+)?answer\s+(?:is|would\s+be|should\s+be)\s*[:：]?\s*(?P<b>[^\n]+)",
    re.IGNORECASE,
)
# Marked option letters inside free text: "(C)", "[C]", "Option C", "option (c)", "**C**".
_MARKED_LETTER = re.compile(
    r"\boption\s*[(\[]?\s*([A-Ha-h])\b[)\]]?"
    r"|[(\[]\s*([A-Ha-h])\s*[)\]]"
    r"|\*\*\s*([A-H])\s*[.):]?\s*\*\*"
    r"|(?<![\w(\[])([A-H])\)",
    re.IGNORECASE,
)
_NUMBER = re.compile(
    r"(?<![\w.])(?P<sign>[-+−])?\s?(?P<num>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)"
    r"(?:\s*/\s*(?P<den>\d+)(?![\d.]))?(?![\d])"
)
_NUMBER_WORDS = {
    word: value
    for value, word in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
            "twenty",
        ]
    )
}
_NUMBER_WORD = re.compile(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b", re.IGNORECASE)
_COORD = r"\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+))\s*"
_BOX = re.compile(r"[\[(]" + ",".join([_COORD] * 4) + r"[\])]")


@dataclass(frozen=True)
class Split:
    """A completion taken apart: its reasoning, and the region its answer is read from."""

    reasoning: str
    answer: str | None  # None: there is no answer region (e.g. an unclosed <think>)


def split_completion(text: str, reasoning: str | None = None) -> Split:
    """Split ``text`` (and an optional separate reasoning field); see the module docstring."""
    closes = list(_THINK_CLOSE.finditer(text))
    if closes:
        last = closes[-1]
        head, tail = text[: last.start()], text[last.end() :]
        head = _THINK_OPEN.sub("", head, count=1) if _THINK_OPEN.match(head.lstrip()) else head
        thought = "\n\n".join(p for p in ((reasoning or "").strip(), head.strip()) if p)
    elif _THINK_OPEN.search(text):
        return Split(reasoning=text, answer=None)  # the thinking never ended
    else:
        thought, tail = (reasoning or "").strip(), text
    blocks = _ANSWER_BLOCK.findall(tail)
    if blocks:
        return Split(thought, blocks[-1].strip())
    opened = list(_ANSWER_OPEN.finditer(tail))
    if opened:  # cut off inside its answer block: what came is the answer so far
        return Split(thought, tail[opened[-1].end() :].strip())
    return Split(thought, tail.strip())


def final_answer(region: str | None) -> str | None:
    """The answer string of a region: last ``\\boxed{}``, else last answer phrase, else all."""
    if region is None:
        return None
    boxed = _last_boxed(region)
    if boxed is not None:
        return boxed.strip() or None
    phrases = list(_PHRASE.finditer(region))
    if phrases:
        found = phrases[-1]
        text = _strip_markup(found.group("a") or found.group("b") or "")
        return text or None
    return _strip_markup(region) or None


def read_choice(answer: str | None) -> str | None:
    """The option letter ``answer`` gives ("C", "(C)", "C)", "Option C", "C. text", "**C**").

    A letter inside ordinary words ("A large sphere") is never taken: in free text only marked
    forms count, and the last one wins.
    """
    if not answer:
        return None
    whole = normalise_choice(answer)
    if whole is not None:
        return whole
    marked = list(_MARKED_LETTER.finditer(answer))
    if marked:
        letter = next(g for g in marked[-1].groups() if g)
        return letter.upper()
    return None


def read_number(answer: str | None) -> float | None:
    """The last number in ``answer``: signs, decimals, thousands separators, fractions, units
    around it ("$1,200", "12 cm", "45%"), or a number word up to twenty ("three")."""
    if not answer:
        return None
    numbers = list(_NUMBER.finditer(answer))
    if numbers:
        found = numbers[-1]
        value = float(found.group("num").replace(",", ""))
        if found.group("den"):
            denominator = float(found.group("den"))
            if denominator == 0:
                return None
            value /= denominator
        return -value if found.group("sign") in ("-", "−") else value
    words = _NUMBER_WORD.findall(answer)
    return float(_NUMBER_WORDS[words[-1].lower()]) if words else None


def read_box(answer: str | None) -> tuple[float, float, float, float] | None:
    """The last ``[x1, y1, x2, y2]`` (or parenthesised) box in ``answer``, ints or floats."""
    if not answer:
        return None
    boxes = _BOX.findall(answer)
    if not boxes:
        return None
    x1, y1, x2, y2 = (float(v) for v in boxes[-1])
    return x1, y1, x2, y2


def _last_boxed(text: str) -> str | None:
    found = None
    for match in _BOXED.finditer(text):
        depth, start = 1, match.end()
        for i in range(start, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    found = text[start:i]
                    break
    return found


def _strip_markup(text: str) -> str:
    text = text.strip()
    text = re.sub(r"^(?:\*\*|__)(.*?)(?:\*\*|__)$", r"\1", text).strip()
    return text.rstrip(".。").strip()
