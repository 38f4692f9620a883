"""The conversation format of training data: RECIPE.md's system prompt and the assistant turn.

One place for both, so that the PPL filter scores exactly the text an SFT export trains on,
and ``train``/``eval`` prompt the model the way the data was written.
"""

from __future__ import annotations

__all__ = ["SYSTEM_PROMPT", "assistant_text"]

SYSTEM_PROMPT = (
    "You are a helpful assistant. The user asks a question about an image, and you solve it. "
    "You first think about the reasoning process in the mind and then provide the user with "
    "the answer. The reasoning process and answer are enclosed within <think> </think> and "
    "<answer> </answer> tags, respectively, i.e., <think> reasoning process here </think>"
    "<answer> answer here </answer>."
)


def assistant_text(reasoning: str, answer: str) -> str:
    """The assistant's turn: ``<think>\\n…\\n</think>\\n<answer>\\n…\\n</answer>``."""
    return f"<think>\n{reasoning.strip()}\n</think>\n<answer>\n{answer.strip()}\n</answer>"
