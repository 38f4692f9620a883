"""Reading the final answer out of a completion, never out of its reasoning.

A completion is split into reasoning and answer region first. In the *lenient* reading (what
``verify`` applies to distilled traces): a separate reasoning field (``reasoning_content``) is
reasoning; in the text, everything up to the last ``</think>`` is reasoning, and an opened
``<think>`` that never closes makes the whole text reasoning (a truncated trace has no answer).
The answer region is the content of the last complete ``<answer>…</answer>`` after the
reasoning, else the text after ``</think>``, else the whole text when it has no tags at all.
The *strict* reading (the paper's output format, what ``train grpo`` and ``eval`` reward) takes
only the content of the last complete ``<answer>…</answer>`` after ``</think>``: no tags, no
answer (the implicit format reward). Several answer blocks earn nothing more.

Within the region, ``read_final`` finds the answer that was stated last: the last
``\\boxed{…}`` group (several boxes in a row are one answer, a set), or an answer phrase
("Answer: X", "the final answer is X", "答案：X", "Die Antwort lautet X") or a self-correction
("so there are actually 4") that comes after it; else the region itself. A hedge ("3 or 4",
"A or C") is no answer. The answer keeps its LaTeX for Math-Verify (``Final.span``) and is
also given as plain text for the typed readers (``read_choice``, ``read_number``,
``read_box``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vlaa_data.answers import normalise_choice

__all__ = [
    "Final",
    "Split",
    "final_answer",
    "parse_options",
    "read_box",
    "read_choice",
    "read_final",
    "read_number",
    "split_completion",
]

_ANSWER_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_ANSWER_OPEN = re.compile(r"<answer>", re.IGNORECASE)
_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
# What may stand between two boxes of one answer: "\boxed{1}, \boxed{2}", "… and \boxed{2}",
# "\quad \text{and} \quad", closing and opening math delimiters.
_BOX_JOINER = re.compile(
    r"^(?:\s|,|;|\\quad|\\qquad|\\,|\\;|\\!|~|\$|\\\)|\\\(|\\\]|\\\["
    r"|\\text\{\s*(?:and|,)\s*\}|\band\b)*$"
)
# The words that introduce an answer; the answer is the rest of their sentence. Anchors only,
# so that every one is found even when a line holds several.
_PHRASE = re.compile(
    r"(?:\*\*|__)?\b(?:final\s+)?answer(?:\*\*|__)?\s*[:：](?:\*\*|__)?"
    r"|\bthe\s+(?:final\s+|correct\s+|right\s+|best\s+)?(?:answer|option|choice)"
    r"\s+(?:is|would\s+be|should\s+be|must\s+be)\b\s*[:：]?"
    r"|(?:正确答案|最终答案|答案)\s*(?:是|为|应为|[:：])"
    r"|故选\s*[:：]?"
    r"|\b(?:die\s+)?antwort\s+(?:lautet|ist)\b\s*[:：]?"
    r"|\bla\s+(?:respuesta|réponse)\s+(?:es|est)\b\s*[:：]?",
    re.IGNORECASE,
)
# A later line that takes the answer back: "so there are actually 4", "correction: 4".
_CORRECTION = re.compile(
    r"\b(?:actually|correction\s*[:,]|I\s+mean)\s*,?\s*"
    r"(?:(?:there\s+(?:are|is)|it\s+is|it's|the\s+(?:correct\s+)?answer\s+is|that's|is|are|be"
    r"|should\s+be)\s+)?(?:only\s+)?"
    r"(?P<v>[-+−]?\d[\d,]*(?:\.\d+)?(?!\d|\.\d)|\(?\b[A-H]\b\)?(?![\w']))"
    # "actually 2 more than", "actually 3 times": a comparison, not a new answer
    r"(?!\s*(?:more|less|fewer|than|times|of\b|%|percent|bigger|smaller|larger|higher|lower))",
)
# A phrase that names a wrong answer is no statement of the answer ("the answer is not 3").
_NOT_A_STATEMENT = re.compile(r"^(?:not\b|wrong|incorrect|correct\b|right\b|that\b|this\b)", re.I)
_HEDGE = re.compile(
    r"^\s*(?P<x>[^\s,;]{1,24})\s*(?:\bor\b|\\text\{\s*or\s*\}|或)\s*(?P<y>[^\s,;]{1,24})\s*$",
    re.IGNORECASE,
)
_MARKED_LETTER = re.compile(
    r"\boption\s*[(\[]?\s*([A-Ha-h])\b[)\]]?"
    r"|\bchoice\s*[(\[]?\s*([A-Ha-h])\b[)\]]?"
    r"|[(\[]\s*([A-Ha-h])\s*[)\]]"
    r"|\*\*\s*([A-H])\s*[.):]?\s*\*\*"
    r"|(?<![\w(\[])([A-H])\)",
    re.IGNORECASE,
)
# A capital letter standing alone ("so C", "C is correct"), not an article before a word.
_BARE_LETTER = re.compile(
    r"(?<![\w'’\-\\{])([A-H])(?![\w'’\-}])"
    r"(?!\s+(?!(?:is|was|seems|appears|or|and|would|should|must|can|matches|fits)\b)[a-z])"
)
_REJECTED_AFTER = re.compile(
    r"^\s*[)\]]?\s*(?:is|was|seems|appears|would\s+be)?\s*(?:also\s+)?"
    r"(?:wrong|incorrect|not\b|false|ruled\s+out|eliminated|excluded|isn'?t|cannot|can't)",
    re.IGNORECASE,
)
_REJECTED_BEFORE = re.compile(
    r"(?:\bnot|\brule\s+out|\beliminate|\bexclude|\breject|\bthan|\bnor|\bnot\s+option)"
    r"\s*(?:option\s*|choice\s*)?[(\[]?\s*$",
    re.IGNORECASE,
)
_NUMBER = re.compile(
    r"(?<![A-Za-z0-9_.])(?P<sign>[-+−])?\s?(?P<num>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)"
    r"(?:\s*/\s*(?P<den>\d+)(?![\d.]))?(?![\d])"
)
# The words before a number that make it the conclusion, strongest first.
_STRONG_CUE = re.compile(
    r"(?:\bso|\bthus|\btherefore|\bhence|\btotal(?:\s+of|\s+is|\s+are)?|\bin\s+all|"
    r"\baltogether|\bequals?|=|\bmakes?|\bgives?|\bleaves?|\bremain(?:s|ing)?)\s*[:：]?\s*$",
    re.IGNORECASE,
)
_WEAK_CUE = re.compile(r"(?:\bis|\bare|\bwere|\bwas|\bhas|\bhave|[:：])\s*$", re.IGNORECASE)
_UNITS = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
]  # fmt: skip
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_WORD_VALUES = {w: v for v, w in enumerate(_UNITS)} | {w: 20 + 10 * i for i, w in enumerate(_TENS)}
_NUMBER_WORDS = re.compile(
    r"\b(?:(?P<h>" + "|".join(_UNITS[1:]) + r")\s+hundred\b"
    r"(?:(?:\s+and)?\s+(?=(?:" + "|".join(_TENS + _UNITS) + r")\b))?)?"
    r"(?P<t>" + "|".join(_TENS) + r")?(?:(?(t)[\s-]?)(?P<u>" + "|".join(_UNITS) + r"))?\b",
    re.IGNORECASE,
)
_COORD = r"\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+))\s*"
_BOX = re.compile(r"[\[(]" + ",".join([_COORD] * 4) + r"[\])]")
_TEXT_COMMANDS = re.compile(
    r"\\(?:text|textbf|mathrm|mathbf|textit|mathit|operatorname)\s*\{([^{}]*)\}"
)
# Full-width forms (Ａ, ３, ：) read as their ASCII letters.
_FULL_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)}
_OPTION_MARK = re.compile(r"(?:^|(?<=[\s,;:：(]))[(\[]?([A-H])\s*[).:：\]]\s*", re.MULTILINE)


@dataclass(frozen=True)
class Split:
    """A completion taken apart: its reasoning, and the region its answer is read from."""

    reasoning: str
    answer: str | None  # None: there is no answer region (e.g. an unclosed <think>)


@dataclass(frozen=True)
class Final:
    """The answer stated last in a region.

    ``text`` is the answer as plain text (for the digit, choice and box readers); ``span`` is
    the same statement with its LaTeX kept (``\\boxed{…}`` groups, ``$…$``), what Math-Verify
    parses; ``how`` says where it was read (boxed, phrase, correction, region); ``after``
    is the rest of the line after a boxed answer ("(Option C)").
    """

    text: str
    span: str
    how: str
    after: str = ""


def split_completion(text: str, reasoning: str | None = None, *, strict: bool = False) -> Split:
    """Split ``text`` (and an optional separate reasoning field); see the module docstring."""
    closes = list(_THINK_CLOSE.finditer(text))
    if closes:
        last = closes[-1]
        head, tail = text[: last.start()], text[last.end() :]
        head = _THINK_OPEN.sub("", head, count=1) if _THINK_OPEN.match(head.lstrip()) else head
        thought = "\n\n".join(p for p in ((reasoning or "").strip(), head.strip()) if p)
    elif _THINK_OPEN.search(text) or strict:
        return Split(reasoning=text, answer=None)  # the thinking never ended, or never began
    else:
        thought, tail = (reasoning or "").strip(), text
    blocks = _ANSWER_BLOCK.findall(tail)
    if blocks:
        return Split(thought, blocks[-1].strip())
    if strict:
        return Split(thought, None)  # the format asks for an answer block
    opened = list(_ANSWER_OPEN.finditer(tail))
    if opened:  # cut off inside its answer block: what came is the answer so far
        return Split(thought, tail[opened[-1].end() :].strip())
    return Split(thought, tail.strip())


def final_answer(region: str | None) -> str | None:
    """The plain text of the answer stated last in ``region`` (see ``read_final``)."""
    final = read_final(region)
    return final.text if final is not None else None


def read_final(region: str | None) -> Final | None:
    """The answer stated last in ``region``, or None (no region, an empty one, a hedge)."""
    if region is None:
        return None
    region = region.translate(_FULL_WIDTH)
    candidates = [c for c in (_boxed_group(region), _last_phrase(region)) if c is not None]
    last = max(candidates, key=lambda c: c[0]) if candidates else None
    found: Final | None
    if last is not None:
        found = (_correction_after(region, last[1]) or last)[2]
    else:
        text = _clean(region)
        found = Final(text, region.strip(), "region") if text else None
    if found is None or not found.text or _is_hedge(found.text):
        return None
    return found


def gold_answer(gold: str) -> Final:
    """The answer a gold states: the whole gold, unless it is a worked solution.

    Some sources store the gold as a step-by-step solution ending in "Answer: X" or a boxed
    value; only that final answer may match, never a value from the working.
    """
    text = gold.translate(_FULL_WIDTH)
    if _BOXED.search(text) or _PHRASE.search(text):
        final = read_final(text)
        if final is not None:
            return final
    return Final(text.strip(), text.strip(), "gold")


def read_choice(answer: str | None, options: dict[str, str] | None = None) -> str | None:
    """The option letter ``answer`` gives: "C", "(C)", "C)", "Option C", "C. text", "**C**",
    "\\text{B}", "so C", lower case alone ("b"), full-width ("Ｃ").

    A letter inside ordinary words ("A large sphere") is never taken, nor one the text rejects
    ("(B) is wrong", "not A"); of the rest the last wins, and two joined by "or" are a hedge.
    Without any letter, an answer equal to one option's value in ``options`` maps to it.
    """
    if not answer:
        return None
    text = _clean(answer)
    if re.fullmatch(r"\s*[a-h]\s*", text):
        return text.strip().upper()
    letters = _letters(text)
    if letters:
        return letters[-1]
    whole = normalise_choice(text)
    if whole is not None:
        return whole
    return _option_by_value(text, options) if options else None


def parse_options(question: str | None) -> dict[str, str]:
    """The options a question lists ("A. 30°", "(B) 45°", "Choices: A: 1 B: 2"), by letter.

    Only letters that run in order from A are taken, so a stray "(C)" in a sentence is not
    read as a list.
    """
    if not question:
        return {}
    marks = list(_OPTION_MARK.finditer(question.translate(_FULL_WIDTH)))
    for first in range(len(marks)):
        if marks[first].group(1) != "A":
            continue
        run = [marks[first]]
        for mark in marks[first + 1 :]:
            if ord(mark.group(1)) == ord(run[-1].group(1)) + 1:
                run.append(mark)
        if len(run) >= 2:
            text = question.translate(_FULL_WIDTH)
            ends = [m.start() for m in run[1:]] + [len(text)]
            return {
                m.group(1): text[m.end() : end].strip().rstrip(";,").strip().split("\n")[0]
                for m, end in zip(run, ends, strict=True)
            }
    return {}


def read_number(answer: str | None) -> float | None:
    """The number ``answer`` states: signs, decimals, thousands separators, fractions, units
    ("$1,200", "12 cm", "45%"), number words ("twenty-one"), a digit beside CJK text ("3个").

    Asides in brackets are dropped ("3 objects (2 cylinders and 1 cube)" is 3). Of several
    numbers, the one after a concluding word ("so", "total", "=") wins, else the one after
    "is"/"are"/":", else a number the answer opens with; otherwise the answer is ambiguous
    (None), as is "3 or 4".
    """
    if not answer:
        return None
    text = _words_to_digits(_clean(answer))
    text = re.sub(r"\([^()]*\)|\[[^\[\]]*\]", " ", text)  # asides
    if _is_hedge(text):
        return None
    numbers = [(m, _value(m)) for m in _NUMBER.finditer(text)]
    numbers = [(m, v) for m, v in numbers if v is not None]
    if not numbers:
        return None
    if len({v for _, v in numbers}) == 1:
        return numbers[0][1]
    strong = [v for m, v in numbers if _STRONG_CUE.search(text[: m.start()])]
    if strong:
        return strong[-1]
    weak = [v for m, v in numbers if _WEAK_CUE.search(text[: m.start()])]
    if weak:
        return weak[0]
    first = numbers[0][0]
    if not text[: first.start()].strip(" $*_:"):
        return numbers[0][1]
    return None


def read_box(answer: str | None) -> tuple[float, float, float, float] | None:
    """The last ``[x1, y1, x2, y2]`` (or parenthesised) box in ``answer``, ints or floats."""
    if not answer:
        return None
    boxes = _BOX.findall(answer)
    if not boxes:
        return None
    x1, y1, x2, y2 = (float(v) for v in boxes[-1])
    return x1, y1, x2, y2


def is_plain_junk(text: str) -> bool:
    """Plain text (no LaTeX) holding several different numbers among words other than "and" /
    "or": "xq 3 zz 7 3" states no answer, whatever number a parser would pick from it."""
    if "\\" in text or "$" in text:
        return False
    numbers = {_value(m) for m in _NUMBER.finditer(text)}
    if len(numbers) < 2:
        return False
    between = re.sub(r"\b(?:and|or)\b", " ", _NUMBER.sub(" ", text), flags=re.IGNORECASE)
    return bool(re.search(r"[A-Za-z]{2,}", between)) and not re.search(r"[=+*/^<>]", text)


def _boxed_group(region: str) -> tuple[int, int, Final] | None:
    """The last run of boxes (``\\boxed{1}, \\boxed{2}`` is one answer), with its sentence."""
    boxes = _boxes(region)
    if not boxes:
        return None
    group = [boxes[-1]]
    for box in reversed(boxes[:-1]):
        if not _BOX_JOINER.match(region[box[1] : group[0][0]]):
            break
        group.insert(0, box)
    start, end = group[0][0], group[-1][1]
    text = ", ".join(_clean(region[s:e]) for _, _, s, e in group)
    # Math-Verify reads the sentence that holds the boxes, as it would read them in the whole
    # text (several in one formula are a set, their LaTeX kept), and nothing else: no earlier
    # statement can be read in their place.
    ends = _sentence_ends(region)
    first = max((e for e in ends if e <= start), default=0)
    stop = min((e for e in ends if e >= end), default=len(region))
    return start, end, Final(text, region[first:stop].strip(), "boxed", region[end:stop])


def _boxes(region: str) -> list[tuple[int, int, int, int]]:
    """Every ``\\boxed{…}``: (start, end, content start, content end); nested braces kept."""
    found = []
    for match in _BOXED.finditer(region):
        depth, start = 1, match.end()
        for i in range(start, len(region)):
            if region[i] == "{":
                depth += 1
            elif region[i] == "}":
                depth -= 1
                if depth == 0:
                    found.append((match.start(), i + 1, start, i))
                    break
    return [b for b in found if not any(o[2] <= b[0] and b[1] <= o[3] for o in found)]


def _last_phrase(region: str) -> tuple[int, int, Final] | None:
    ends = _sentence_ends(region)
    for match in reversed(list(_PHRASE.finditer(region))):
        stop = min((e for e in ends if e > match.end()), default=len(region))
        value = region[match.end() : stop]
        if _NOT_A_STATEMENT.match(value.strip(" *_")):
            continue
        if _BOXED.search(value):  # "the final answer is \boxed{5}": the box is the answer
            return None
        text = _clean(value)
        if not text:
            continue
        span = value.strip().rstrip(".。").strip()  # a full stop is no part of a formula
        return match.start(), match.end(), Final(text, span, "phrase")
    return None


def _sentence_ends(text: str) -> list[int]:
    """Where sentences end: a line break or ". " outside math (``$…$``, ``$$…$$``, ``\\(…\\)``,
    ``\\[…\\]``), so a formula is never cut in two."""
    ends: list[int] = []
    inline = display = False
    i = 0
    while i < len(text):
        if text.startswith("$$", i):
            display, i = not display, i + 2
            continue
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            follower = text[i + 1]
            if follower in "[(":
                display = True
            elif follower in "])":
                display = False
            i += 2
            continue
        if char == "$":
            inline = not inline
        elif not (inline or display):
            if char == "\n":
                ends.append(i)
            elif char in ".!?。" and (i + 1 == len(text) or text[i + 1].isspace()):
                ends.append(i + 1)
        i += 1
    return ends


def _correction_after(region: str, end: int) -> tuple[int, int, Final] | None:
    tail = region[end:]
    found = list(_CORRECTION.finditer(tail))
    if not found:
        return None
    last = found[-1]
    value = last.group("v")
    return end + last.start(), end + last.end(), Final(_clean(value), value, "correction")


def _is_hedge(text: str) -> bool:
    match = _HEDGE.match(_clean(text))
    return (
        match is not None
        and match.group("x").strip("()").lower() != match.group("y").strip("()").lower()
    )


def _letters(text: str) -> list[str]:
    """The option letters ``text`` puts forward, in order, rejected ones left out; a final
    pair joined by "or" (a hedge) leaves none."""
    found: list[tuple[int, int, str]] = []
    for match in _MARKED_LETTER.finditer(text):
        letter = next(g for g in match.groups() if g)
        found.append((match.start(), match.end(), letter.upper()))
    for match in _BARE_LETTER.finditer(text):
        if not any(s <= match.start() < e for s, e, _ in found):
            found.append((match.start(), match.end(), match.group(1)))
    found.sort()
    kept = [
        (s, e, letter)
        for s, e, letter in found
        if not _REJECTED_AFTER.match(text[e:]) and not _REJECTED_BEFORE.search(text[:s])
    ]
    if len(kept) >= 2:
        (_, e1, a), (s2, _, b) = kept[-2], kept[-1]
        if a != b and re.fullmatch(r"\s*(?:or|/|或)\s*", text[e1:s2], re.IGNORECASE):
            return []
    return [letter for _, _, letter in kept]


def _option_by_value(text: str, options: dict[str, str]) -> str | None:
    target = _comparable(text)
    if not target:
        return None
    hits = [letter for letter, value in options.items() if _comparable(value) == target]
    return hits[0] if len(hits) == 1 else None


def _comparable(text: str) -> str:
    text = _clean(text).lower().replace("√", "\\sqrt")
    text = re.sub(r"\\[dt]frac", r"\\frac", text)
    text = re.sub(r"\\sqrt\s*(\d)", r"\\sqrt{\1}", text)
    text = re.sub(r"\\frac\s*(\d)\s*(\d)", r"\\frac{\1}{\2}", text)
    text = re.sub(r"\\left|\\right|\\,|\\!|\\;|\$|\s", "", text)
    return text.replace("^\\circ", "°").replace("^{\\circ}", "°").rstrip(".")


def _value(match: re.Match[str]) -> float | None:
    value = float(match.group("num").replace(",", ""))
    if match.group("den"):
        denominator = float(match.group("den"))
        if denominator == 0:
            return None
        value /= denominator
    return -value if match.group("sign") in ("-", "−") else value


def _words_to_digits(text: str) -> str:
    if not _ANY_NUMBER_WORD.search(text):
        return text

    def number(match: re.Match[str]) -> str:
        if not match.group(0).strip():
            return match.group(0)
        value = 0
        if match.group("h"):
            value += 100 * _WORD_VALUES[match.group("h").lower()]
        if match.group("t"):
            value += _WORD_VALUES[match.group("t").lower()]
        if match.group("u"):
            value += _WORD_VALUES[match.group("u").lower()]
        return str(value)

    return _NUMBER_WORDS.sub(number, text)


_ANY_NUMBER_WORD = re.compile(r"\b(?:" + "|".join(_UNITS + _TENS) + r")\b", re.IGNORECASE)
_BOLD_WHOLE = re.compile(r"^(?:\*\*|__)(.*?)(?:\*\*|__)$")
_BOLD_ENDS = re.compile(r"^(?:\*\*|__)\s*|\s*(?:\*\*|__)$")
_MATH_ENDS = re.compile(r"^\\\(|\\\)$|^\\\[|\\\]$")


def _clean(text: str) -> str:
    """Plain text of an answer: markup, ``\\text{}`` and math delimiters dropped."""
    text = text.translate(_FULL_WIDTH).strip()
    while "\\" in text and (plain := _TEXT_COMMANDS.sub(r"\1", text)) != text:
        text = plain
    if "*" in text or "_" in text:
        text = _BOLD_ENDS.sub("", _BOLD_WHOLE.sub(r"\1", text).strip()).strip()
    if text.startswith("$") and text.endswith("$") and text.count("$") == 2:
        text = text.strip("$").strip()
    if "\\" in text:
        text = _MATH_ENDS.sub("", text).strip()
    return text.rstrip(".。").strip()
