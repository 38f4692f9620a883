"""The demo's stand-in replies (vlaa_data.testing.demo): each step's prompt gets the reply that
step expects (caption, distill, rewrite, verify's judge, the aha judge), and the distilled
answers vary with the question, mostly right."""

from __future__ import annotations

import json

from vlaa_data.filters.aha import PAPER_KEYWORDS, find_aha
from vlaa_data.llm.templates import load_template, render
from vlaa_data.sources import SourceOptions
from vlaa_data.sources.synthetic import SyntheticSource
from vlaa_data.steps.aha_judge import read_verdicts
from vlaa_data.steps.distill import render_context
from vlaa_data.steps.rewrite import mentions_given_text, words_changed
from vlaa_data.testing.demo import answer_key, demo_responder

N = 120


def ask(respond, content) -> str:
    return respond({"model": "m", "messages": [{"role": "user", "content": content}]}, 1).content


def test_distill_replies_vary_with_the_question_and_are_mostly_right() -> None:
    respond = demo_responder("lone", key=answer_key(limit=N))
    template = load_template("distill")
    right, aha, mention = 0, 0, 0
    for row in SyntheticSource(None, SourceOptions(limit=N, seed=0)).rows():
        # The context as collect stores it (keys sorted) and distill renders it.
        context = json.loads(json.dumps(row.context, sort_keys=True))
        values = {"caption": "A picture.", "context": render_context(context)}
        prompt = render(template, {**values, "question": row.question})
        thought, answer = ask(respond, prompt).split("</think>")
        right += answer == f"Answer: {row.answer}"
        aha += bool(find_aha(thought + answer, PAPER_KEYWORDS))
        mention += mentions_given_text(thought)
    assert 0.75 * N < right < N  # mostly right, and wrong sometimes: verify rejects some
    assert 0.2 * N < aha < 0.6 * N  # split sends these to RL, the rest to SFT
    assert 0 < mention < 0.4 * N  # rewrite has a few texts to edit
    # A question the answer key does not hold still gets a reply in the expected form.
    assert ask(respond, "Question: What is 2 + 2?").endswith("</think>Answer: 3")


def test_caption_judge_and_rewrite_replies() -> None:
    respond = demo_responder("inline", key={})
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    caption = ask(respond, [{"type": "text", "text": "Describe the image."}, image])
    assert caption and "answer" not in caption.lower() and "</think>" not in caption
    judge = load_template("verify")
    values = {"question": "How many?", "gold": "5"}
    assert ask(respond, render(judge, {**values, "answer": "So 5.\nAnswer: 5"})) == "Yes"
    assert ask(respond, render(judge, {**values, "answer": "Answer: 6"})) == "No"
    text = (
        "<think>\nAccording to the description of the image, the answer is 5.\n</think>\nAnswer: 5"
    )
    rewritten = ask(respond, render(load_template("rewrite"), {"text": text}))
    assert rewritten == "<think>\nIn the image, the answer is 5.\n</think>\nAnswer: 5"
    assert not mentions_given_text(rewritten) and words_changed(text, rewritten) <= 15
    hits = "1. So it is 4. [[Wait]], let me double-check.\n2. I [[check]] the colours: red."
    aha = render(load_template("aha"), {"question": "How many?", "count": "2", "hits": hits})
    assert read_verdicts(ask(respond, aha), 2) == ["genuine", "filler"]
