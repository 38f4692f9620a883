"""The scripted stand-in's replies for the demo: ``python -m vlaa_data.testing.server --demo``.

``scripts/demo.sh --scripted`` runs the whole pipeline on the bundled synthetic sample without
an account. This responder answers each LLM step in the form the step expects, so every stage
has something to do: captions, reasoning that varies with the question (a hash of it picks
the template; some say "wait, let me double-check", which the aha filter sends to RL; some
mention "the description", which rewrite must edit), rewrites, and judge verdicts.

It is not a model, and it cheats: it does not look at the image, it reads the answer from the
synthetic generator's own answer key (``answer_key``), found by the question and the scene
numbers the distill prompt carries. It answers right most of the time, so that verify passes
samples, and deliberately wrong one time in seven, so that verify has something to reject.
The server marks every reply as scripted, and ``vlaa-data status`` counts them: this is
placeholder data that shows the mechanics, never data to train on.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from vlaa_data.testing.server import Reply, Responder, _last_user_text, place_reasoning

__all__ = ["Known", "answer_key", "demo_responder", "wrong_answer"]

# The demo collects `synthetic` with seed 0; the key covers the source's default limit.
KEY_SEED = 0
KEY_LIMIT = 1000
_WRONG_ONE_IN = 7
_NUMBER = re.compile(r"-?\d+")
_QUESTION = re.compile(r"^Question: (.+)$", re.MULTILINE)
_GOLD = re.compile(r"^Ground truth: (.*)$", re.MULTILINE)
_CHECKED = re.compile(r"^Answer to check: (.*?)\n\s*\n\S", re.MULTILINE | re.DOTALL)
_HIT = re.compile(r"^(\d+)\. (.*)$", re.MULTILINE)
_THINK_LINE = re.compile(r"^<think>$", re.MULTILINE)

_CAPTIONS = (
    "A plain, light background with a few flat coloured shapes, drawn without shading.",
    "A simple computer-drawn figure on a white background, with thin dark labels.",
    "A small synthetic picture: solid colours, sharp edges and no texture.",
)
# Bodies after the opening line. None of the plain ones holds an aha keyword (wait, again,
# check, hmm, mistake, ...); the last plain one refers to a description, as models given a
# caption do, so that rewrite has a text to edit.
_PLAIN = (
    "{opening}\n\nGoing through the question one step at a time, the result is {answer}.",
    "{opening}\n\nReading the image carefully and doing what the question asks gives {answer}.",
    "{opening}\n\nAccording to the description of the image, the answer is {answer}.",
)
_AHA = (
    "{opening}\n\nAt first glance the answer seems to be {first}.\n\n"
    "Wait, let me double-check that against the image. Looking more closely, it is {answer}.",
    "{opening}\n\nHmm, one part of the image is easy to miss, so I go over it a second time."
    "\n\nThat settles it: {answer}.",
)
_TEMPLATES = _PLAIN + _AHA
# What rewrite's stand-in changes: references to a given text become references to the image.
_REWRITES = (
    ("According to the description of the image", "In the image"),
    ("the description of the image", "the image"),
    ("the description", "the image"),
    ("the caption", "the image"),
)


@dataclass(frozen=True)
class Known:
    """One synthetic sample as the answer key holds it."""

    answer: str
    reward_type: str
    context: dict[str, Any]
    numbers: Counter[str]  # the integers of its scene, whatever order the prompt shows them in


def answer_key(seed: int = KEY_SEED, limit: int = KEY_LIMIT) -> dict[str, list[Known]]:
    """The synthetic source's samples (``seed``, the first ``limit``) by the first line of
    their question; several scenes may share one."""
    from vlaa_data.sources import SourceOptions
    from vlaa_data.sources.synthetic import SyntheticSource

    key: dict[str, list[Known]] = defaultdict(list)
    for row in SyntheticSource(None, SourceOptions(limit=limit, seed=seed)).rows():
        assert row.reward_type is not None
        numbers = Counter(_NUMBER.findall(repr(row.context)))
        known = Known(row.answer, row.reward_type, row.context, numbers)
        key[row.question.splitlines()[0]].append(known)
    return dict(key)


def wrong_answer(known: Known) -> str:
    """A plausible answer that the rules mark incorrect."""
    answer = known.answer
    if known.reward_type == "digit":
        return str(int(answer) + 1)
    if known.reward_type == "choice":
        return "ABCD"[("ABCD".index(answer) + 1) % 4] if answer in "ABCD" else "A"
    if known.reward_type == "iou":
        x1, y1, x2, y2 = (int(n) for n in _NUMBER.findall(answer))
        return f"[{x2}, {y1}, {2 * x2 - x1}, {y2}]"  # beside the right box: IoU 0
    return f"{answer} + 1"


def demo_responder(
    reasoning: str = "lone", *, key: dict[str, list[Known]] | None = None
) -> Responder:
    """Replies for caption, distill (its thought placed in style ``reasoning``, as
    ``builtin_responder`` places it), rewrite, verify's judge and the aha judge."""
    key = answer_key() if key is None else key

    def respond(request: dict, attempt: int) -> Reply:
        text = _last_user_text(request)
        if _has_image(request):
            return Reply.ok(_CAPTIONS[_hash(str(request.get("messages"))) % len(_CAPTIONS)])
        if _GOLD.search(text) and "Answer to check:" in text:
            return Reply.ok(_judge(text))
        if "[[" in text and "genuine" in text:
            return Reply.ok(_aha_verdicts(text))
        if _THINK_LINE.search(text):
            return Reply.ok(_rewrite(text))
        question = _QUESTION.search(text)
        if question is not None:
            thought, answer = _distill(text, question.group(1).strip(), key)
            thinking, content = place_reasoning(thought, answer, reasoning)
            return Reply.ok(content, reasoning_content=thinking)
        return Reply.ok("The answer is 3.")

    return respond


def _distill(prompt: str, first_line: str, key: dict[str, list[Known]]) -> tuple[str, str]:
    known = _find(prompt, key.get(first_line, []))
    if known is None:  # not a sample of the key: a placeholder like the default responder's
        return "Looking at the image.", "Answer: 3"
    h = _hash(first_line, repr(sorted(known.numbers.items())))
    template = _TEMPLATES[h % len(_TEMPLATES)]
    answer = wrong_answer(known) if (h // len(_TEMPLATES)) % _WRONG_ONE_IN == 0 else known.answer
    thought = template.format(
        opening=_opening(known.context), answer=answer, first=wrong_answer(known)
    )
    return thought, f"Answer: {answer}"


def _find(prompt: str, candidates: list[Known]) -> Known | None:
    """The candidate whose scene numbers all appear in the prompt (the most such numbers)."""
    seen = Counter(_NUMBER.findall(prompt))
    fitting = [k for k in candidates if all(seen[n] >= c for n, c in k.numbers.items())]
    return max(fitting, key=lambda k: k.numbers.total(), default=None)


def _opening(context: dict[str, Any]) -> str:
    kind = context.get("kind")
    if kind == "counting":
        return f"The image shows {len(context.get('objects', []))} objects on a plain background."
    if kind == "plot":
        low, high = context.get("x_range", ("?", "?"))
        return f"The graph shows a curve on a grid, with x running from {low} to {high}."
    if kind == "chart":
        names = ", ".join(context.get("categories", []))
        return f"The bar chart has {len(context.get('categories', []))} bars: {names}."
    if kind == "grounding":
        return f"The image holds {len(context.get('items', []))} coloured shapes."
    return "Looking at the image."


def _judge(prompt: str) -> str:
    """Yes when the answer's last ``Answer:`` (else its last line) is the ground truth."""
    gold = _GOLD.search(prompt)
    checked = _CHECKED.search(prompt)
    if gold is None or checked is None:
        return "No"
    answer = checked.group(1).strip()
    final = answer.rsplit("Answer:", 1)[-1] if "Answer:" in answer else answer.splitlines()[-1]
    return "Yes" if _norm(final) == _norm(gold.group(1)) else "No"


def _aha_verdicts(prompt: str) -> str:
    """``N: genuine`` where the hit's text catches something (double-check, wait), else filler."""
    lines = []
    for number, context in _HIT.findall(prompt):
        genuine = re.search(r"double-check|wait", context, re.IGNORECASE)
        lines.append(f"{number}: {'genuine' if genuine else 'filler'}")
    return "\n".join(lines)


def _rewrite(prompt: str) -> str:
    """The text after the prompt's instructions, from its ``<think>`` line, with references to
    a description turned into references to the image."""
    *_, start = _THINK_LINE.finditer(prompt)
    text = prompt[start.start() :].strip()
    for before, after in _REWRITES:
        text = text.replace(before, after)
    return text


def _has_image(request: dict) -> bool:
    for message in request.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list) and any(
            isinstance(part, dict) and part.get("type") == "image_url" for part in content
        ):
            return True
    return False


def _hash(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\n".join(parts).encode()).digest()[:8], "big")


def _norm(text: str) -> str:
    return " ".join(text.strip().strip(".").lower().split())
