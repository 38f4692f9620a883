"""The conversation format of training data: RECIPE.md's system prompt, the per-type task
instructions, the user turn and the assistant turn.

One place for all of them, so that the PPL filter scores exactly the text an SFT export trains
on, and ``train``/``eval`` prompt the model the way the data was written. An ``hf`` export
records them in ``PROMPT_FILE`` (``prompt_record``), for tools that build prompts of their own.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "MULTIPLE_CHOICE",
    "PROMPT_FILE",
    "SHORT_ANSWER",
    "SYSTEM_PROMPT",
    "TASK_INSTRUCTIONS",
    "assistant_text",
    "prompt_messages",
    "prompt_record",
    "user_text",
]

SYSTEM_PROMPT = (
    "You are a helpful reasoning assistant. The user asks a question about an image, and you "
    "solve it. You first think about the reasoning process in the mind and then provide the "
    "user with the answer. The reasoning process and answer are enclosed within <think> </think> "
    "and <answer> </answer> tags, respectively, i.e., <think> reasoning process here </think>"
    "<answer> answer here </answer>."
)

MULTIPLE_CHOICE = "Answer with the option's letter from the given choices."
SHORT_ANSWER = "Answer with a single word, number or phrase."
# By reward type: the form the verifier reads. Grounding questions name their box format
# themselves, and open-ended ones (DocVQA, VizWiz, ALLaVA) range from a word to a paragraph,
# so neither gets an instruction.
TASK_INSTRUCTIONS = {"choice": MULTIPLE_CHOICE, "digit": SHORT_ANSWER, "math": SHORT_ANSWER}

PROMPT_FILE = "prompt.json"


def user_text(question: str, reward_type: str | None) -> str:
    """The user turn's text: the question, then its reward type's instruction (if any)."""
    instruction = TASK_INSTRUCTIONS.get(reward_type or "")
    return f"{question.rstrip()}\n{instruction}" if instruction else question


def prompt_messages(question: str, reward_type: str | None) -> list[dict[str, Any]]:
    """The system and user turns as an ``hf`` export stores them (content parts; the image part
    first) and as every chat template reads them."""
    return [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        {
            "role": "user",
            "content": [
                {"type": "image"},
                {"type": "text", "text": user_text(question, reward_type)},
            ],
        },
    ]


def assistant_text(reasoning: str, answer: str) -> str:
    """The assistant's turn: ``<think>\\n…\\n</think>\\n<answer>\\n…\\n</answer>``."""
    return f"<think>\n{reasoning.strip()}\n</think>\n<answer>\n{answer.strip()}\n</answer>"


def prompt_record() -> dict[str, Any]:
    """What ``PROMPT_FILE`` in an ``hf`` export holds: how its prompts were built."""
    return {
        "system_prompt": SYSTEM_PROMPT,
        "task_instructions": dict(sorted(TASK_INSTRUCTIONS.items())),
        "user_turn": "the image, then the question, a newline and its reward type's instruction",
        "assistant_turn": assistant_text("REASONING", "ANSWER"),
    }
