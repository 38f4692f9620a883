"""The eight dataset adapters: each maps a small file shaped like its real dataset."""

from __future__ import annotations

import pytest

from vlaa_data.sources.adapters import __all__ as adapters_all
from vlaa_data.sources.allava_laion import AllavaLaion
from vlaa_data.sources.arxivqa import ArxivQA
from vlaa_data.sources.base import ADAPTERS, RawSample, RowRejected, SourceOptions, content_id
from vlaa_data.sources.clevr_math import ClevrMath
from vlaa_data.sources.conversations import answer_line, boxed, strip_image_token
from vlaa_data.sources.docvqa import DocVQA
from vlaa_data.sources.geoqa170k import GeoQA170K
from vlaa_data.sources.llava_cot import LlavaCot
from vlaa_data.sources.math_puma import MathPuma
from vlaa_data.sources.vizwiz import VizWiz, majority_answer

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def collect(adapter, path, **options):
    return list(adapter(path, SourceOptions(**options)).rows())


def test_all_eight_adapters_register_under_their_names():
    assert adapters_all == []
    expected = {
        "clevr-math": ClevrMath,
        "math-puma": MathPuma,
        "arxivqa": ArxivQA,
        "docvqa": DocVQA,
        "vizwiz": VizWiz,
        "allava-laion": AllavaLaion,
        "llava-cot": LlavaCot,
        "geoqa170k": GeoQA170K,
    }
    assert {name: ADAPTERS[name] for name in expected} == expected


def test_clevr_math_joins_the_scene_file_by_image_name(ds):
    red = ds.image("images/CLEVR_train_000012.png", RED)
    green = ds.image("images/CLEVR_train_000013.png", GREEN)
    obj = {"color": "red", "size": "large", "shape": "cube", "material": "rubber"}
    extra = {"3d_coords": [1, 2, 0.7], "pixel_coords": [10, 20, 9.5], "rotation": 3.1}
    ds.json(
        "CLEVR_train_scenes.json",
        {
            "info": {"split": "train"},
            "scenes": [
                {"image_filename": "CLEVR_train_000012.png", "objects": [{**obj, **extra}]},
                {"image_filename": "CLEVR_train_000099.png", "objects": []},
            ],
        },
    )
    inline = [{"color": "blue", "size": "small", "shape": "sphere", "material": "metal", **extra}]
    path = ds.jsonl(
        "clevr.jsonl",
        [
            {
                "template": "subtraction",
                "id": "CLEVR_train_000012",
                "question": "Subtract all cubes. How many objects are left?",
                "image": "images/CLEVR_train_000012.png",
                "label": 0,
            },
            {
                "template": "addition",
                "id": "CLEVR_train_000013",
                "question": "Add 2 spheres. How many spheres are there?",
                "image": "images/CLEVR_train_000013.png",
                "label": 3,
                "objects": inline,
            },
        ],
    )
    first, second = collect(ClevrMath, path)
    assert (first.source_id, first.answer, first.reward_type) == (
        "CLEVR_train_000012",
        "0",
        "digit",
    )
    assert first.question == "Subtract all cubes. How many objects are left?"
    assert first.context == {"template": "subtraction", "scene": [obj]}
    assert first.image.load() == red
    assert second.context == {
        "template": "addition",
        "scene": [{"color": "blue", "size": "small", "material": "metal", "shape": "sphere"}],
    }
    assert (second.answer, second.image.load()) == ("3", green)


def test_clevr_math_parquet_joins_by_the_image_dict_path_and_omits_unknown_scenes(ds):
    blue = ds.image_bytes(BLUE)
    white = ds.image_bytes(WHITE)
    objects = [{"color": "gray", "size": "small", "shape": "cylinder", "material": "metal"}]
    ds.json(
        "data/CLEVR_val_scenes.json",
        {"scenes": [{"image_filename": "CLEVR_val_000001.png", "objects": objects}]},
    )
    row = {"template": "subtraction", "question": "How many?", "label": 1}
    path = ds.parquet(
        "data/train-00000.parquet",
        [
            {**row, "id": "a", "image": {"bytes": blue, "path": "CLEVR_val_000001.png"}},
            {**row, "id": "b", "image": {"bytes": white, "path": "CLEVR_val_000777.png"}},
        ],
    )
    joined, unknown = collect(ClevrMath, path)
    assert joined.context == {"template": "subtraction", "scene": objects}
    assert joined.image.load() == blue
    assert unknown.context == {"template": "subtraction"}
    assert (unknown.source_id, unknown.answer, unknown.image.load()) == ("b", "1", white)


def test_math_puma_flat_rows_keep_the_text_only_question(ds):
    red = ds.image("puma/1.png", RED)
    ds.image("puma/2.png", GREEN)
    path = ds.json(
        "puma/synthesis.json",
        [
            {
                "id": "p1",
                "image": "puma/1.png",
                "question": "Find x in the figure.",
                "answer": "The sum is 180, so \\boxed{\\frac{1}{2}}",
                "text_question": "In triangle ABC with angle A = 30 degrees, find x.",
            },
            {
                "image": "puma/2.png",
                "question": "Which is larger?\nA. 1\nB. 2",
                "answer": "B",
                "question_text": "Which is larger, 1 or 2?",
            },
        ],
    )
    first, second = collect(MathPuma, path, images=ds.root)
    assert (first.source_id, first.answer, first.reward_type) == ("p1", "\\frac{1}{2}", "math")
    assert first.context == {"text_question": "In triangle ABC with angle A = 30 degrees, find x."}
    assert first.image.load() == red
    assert (second.answer, second.reward_type) == ("B", "choice")
    assert second.context == {"text_question": "Which is larger, 1 or 2?"}
    assert second.source_id == content_id("puma/2.png", "Which is larger?\nA. 1\nB. 2")


def test_math_puma_conversation_rows_take_the_final_answer(ds):
    blue = ds.image("img/3.png", BLUE)

    def turns(question, reply):
        return [{"from": "human", "value": question}, {"from": "gpt", "value": reply}]

    path = ds.jsonl(
        "puma.jsonl",
        [
            {
                "id": 3,
                "image": "img/3.png",
                "conversations": turns("<image>\nWhat is y?", "y = 2x, hence\nAnswer: 2x+1"),
                "text_conversations": turns("Line y = 2x + 1. What is y?", "Answer: 2x+1"),
            },
            {
                "id": 4,
                "image": "img/3.png",
                "conversations": turns(
                    "<image>\nArea?", "\\boxed{\\sqrt{2}} then \\boxed{{a}^{2}}"
                ),
            },
        ],
    )
    first, second = collect(MathPuma, path)
    assert (first.source_id, first.question, first.answer) == ("3", "What is y?", "2x+1")
    assert first.context == {"text_question": "Line y = 2x + 1. What is y?"}
    assert first.image.load() == blue
    assert (second.answer, second.reward_type, second.context) == ("{a}^{2}", "math", {})


@pytest.mark.parametrize(
    ("label", "answer", "reward_type"),
    [
        ("A", "A", "choice"),
        ("B)", "B", "choice"),
        ("(c)", "C", "choice"),
        ("D. the red curve", "D", "choice"),
        ("the red curve", "the red curve", None),
    ],
)
def test_arxivqa_normalises_label_forms(ds, label, answer, reward_type):
    green = ds.image("images/2304.001-1.png", GREEN)
    options = ["A) 0.1", "B) 0.2", "C) 0.3", "D) 0.4"]
    path = ds.jsonl(
        "arxivqa.jsonl",
        [
            {
                "id": "cond-mat-1",
                "image": "images/2304.001-1.png",
                "options": options,
                "question": "What is the peak value?",
                "label": label,
                "rationale": "The curve peaks at 0.3.",
            }
        ],
    )
    [sample] = collect(ArxivQA, path)
    assert sample.question == "What is the peak value?\nA) 0.1\nB) 0.2\nC) 0.3\nD) 0.4"
    assert (sample.source_id, sample.answer, sample.reward_type) == (
        "cond-mat-1",
        answer,
        reward_type,
    )
    assert sample.context == {"options": options, "rationale": "The curve peaks at 0.3."}
    assert sample.image.load() == green


def test_map_option_overrides_the_question_column(ds):
    ds.image("a.png", RED)
    row = {"id": "x", "image": "a.png", "options": ["A) yes", "B) no"], "label": "A"}
    path = ds.jsonl("arxivqa.jsonl", [{**row, "question": "ignored", "query": "Is it red?"}])
    [sample] = collect(ArxivQA, path, mapping={"question": "query"})
    assert sample.question == "Is it red?\nA) yes\nB) no"


def test_docvqa_original_layout(ds):
    red = ds.image("train/documents/ffbf0023_4.png", RED)
    path = ds.json(
        "train/train_v1.0.json",
        {
            "dataset_name": "docvqa",
            "dataset_split": "train",
            "data": [
                {
                    "questionId": 337,
                    "question": "what is the date mentioned in this letter?",
                    "question_types": ["handwritten"],
                    "image": "documents/ffbf0023_4.png",
                    "docId": 279,
                    "answers": ["1/8/93", "January 8, 1993"],
                },
                {
                    "questionId": 338,
                    "question": "who signed it?",
                    "image": "documents/ffbf0023_4.png",
                    "docId": 279,
                },
            ],
        },
    )
    first, unanswered = collect(DocVQA, path)
    assert (first.source_id, first.answer, first.reward_type) == ("337", "1/8/93", "open")
    assert first.question == "what is the date mentioned in this letter?"
    assert first.context == {"answers": ["1/8/93", "January 8, 1993"], "doc_id": 279}
    assert first.image.load() == red
    assert (unanswered.source_id, unanswered.answer, unanswered.context["answers"]) == (
        "338",
        None,
        [],
    )


def test_docvqa_parquet_layout(ds):
    blue = ds.image_bytes(BLUE)
    path = ds.parquet(
        "DocVQA/validation-00000.parquet",
        [
            {
                "questionId": "49153",
                "question": "What is the ‘actual’ value per 1000, during the year 1975?",
                "question_types": ["figure/diagram"],
                "image": {"bytes": blue, "path": "pybv0228_81.png"},
                "docId": 14465,
                "answers": ["0.28"],
            }
        ],
    )
    [sample] = collect(DocVQA, path)
    assert (sample.source_id, sample.answer) == ("49153", "0.28")
    assert sample.context == {"answers": ["0.28"], "doc_id": 14465}
    assert sample.image.load() == blue


def test_vizwiz_takes_the_majority_answer(ds):
    first_image = ds.image("val/VizWiz_val_00000000.jpg", RED, "JPEG")
    ds.image("val/VizWiz_val_00000001.jpg", GREEN, "JPEG")

    def votes(*pairs):
        return [{"answer": a, "answer_confidence": c} for a, c in pairs]

    annotations = [
        {
            "image": "VizWiz_val_00000000.jpg",
            "question": "What is this can?",
            "answers": votes(
                ("soda", "maybe"), ("coke", "yes"), ("coke", "yes"), ("soda", "yes"), ("coke", "no")
            ),
            "answer_type": "other",
            "answerable": 1,
        },
        {
            "image": "VizWiz_val_00000001.jpg",
            "question": "What colour?",
            "answers": votes(("blue", "maybe"), ("green", "yes"), ("blue", "no"), ("green", "no")),
            "answer_type": "other",
            "answerable": 1,
        },
    ]
    path = ds.json("val/val.json", annotations)
    first, tie = collect(VizWiz, path)
    assert (first.source_id, first.answer, first.reward_type) == (
        "VizWiz_val_00000000",
        "coke",
        "open",
    )
    assert first.context == {"answers": ["soda", "coke"], "answer_type": "other", "answerable": 1}
    assert first.image.load() == first_image
    assert (tie.source_id, tie.answer) == ("VizWiz_val_00000001", "green")


def test_vizwiz_tie_without_confidence_goes_to_the_first_seen():
    assert majority_answer(["b", "a", "a", "b", ""]) == ("b", ["b", "a"])
    assert majority_answer([]) == (None, [])


def test_allava_laion_joins_the_caption_file(ds):
    red = ds.image("allava_laion/images/100277305.jpeg", RED, "JPEG")
    green = ds.image("allava_laion/images/100277306.jpeg", GREEN, "JPEG")

    def record(image, question, reply, **extra):
        turns = [{"from": "human", "value": question}, {"from": "gpt", "value": reply}]
        return {"image": image, "conversations": turns, **extra}

    first_image = "allava_laion/images/100277305.jpeg"
    second_image = "allava_laion/images/100277306.jpeg"
    ds.json(
        "allava_laion/ALLaVA-Caption-LAION-4V.json",
        [
            record(first_image, "<image>\nDescribe the image.", "A red square.", id="cap_1"),
            record(second_image, "<image>\nDescribe the image.", "A green square.", id="cap_2"),
        ],
    )
    path = ds.json(
        "allava_laion/ALLaVA-Instruct-LAION-4V.json",
        [
            record(first_image, "<image>\nWhat shape?", "A square.", id="allava_laion_inst_1"),
            record(second_image, "Colour?\n<image>", "Green.", id="inst_2", caption="Own."),
        ],
    )
    first, second = collect(AllavaLaion, path)
    assert (first.source_id, first.question, first.answer) == (
        "allava_laion_inst_1",
        "What shape?",
        "A square.",
    )
    assert (first.context, first.reward_type) == ({"caption": "A red square."}, "open")
    assert first.image.load() == red
    assert (second.question, second.context) == ("Colour?", {"caption": "Own."})
    assert second.image.load() == green


def test_allava_laion_without_caption_file_has_no_caption(ds):
    ds.image("x/images/1.jpeg", BLUE, "JPEG")
    turns = [{"from": "human", "value": "<image>\nQ?"}, {"from": "gpt", "value": "A."}]
    path = ds.json(
        "ALLaVA-Instruct-LAION-4V.json",
        [{"id": "1", "image": "x/images/1.jpeg", "conversations": turns}],
    )
    [sample] = collect(AllavaLaion, path)
    assert sample.context == {}
    assert sample.image.load() == ds.image_bytes(BLUE, "JPEG")


def _cot(summary, caption, reasoning, conclusion=None):
    text = f"<SUMMARY>{summary}</SUMMARY> <CAPTION>{caption}</CAPTION> "
    text += f"<REASONING>{reasoning}</REASONING>"
    return text + (f" <CONCLUSION>{conclusion}</CONCLUSION>" if conclusion is not None else "")


def test_llava_cot_takes_the_conclusion_and_routes_boxes_to_iou(ds):
    red = ds.image("coco/train2017/000000000123.jpg", RED, "JPEG")
    green = ds.image("vg/VG_100K/2.jpg", GREEN, "JPEG")

    def row(id_, image, question, reply, *more):
        turns = [{"from": "human", "value": question}, {"from": "gpt", "value": reply}, *more]
        return {"id": id_, "image": image, "conversations": turns}

    later = [{"from": "human", "value": "And then?"}, {"from": "gpt", "value": "Ignored."}]
    path = ds.jsonl(
        "train.jsonl",
        [
            row(
                "coco-1",
                "coco/train2017/000000000123.jpg",
                "<image>\nHow many dogs are there?",
                _cot("Count dogs.", "Two dogs on grass.", "I see two.", " 2 \n"),
                *later,
            ),
            row(
                "vg-2",
                "vg/VG_100K/2.jpg",
                "Please provide the bounding box coordinate of the region: a green square.",
                _cot("Locate.", "A green square.", "It fills the image.", "[0.1, 0.2, 0.9, 0.95]"),
            ),
            row("coco-3", "coco/train2017/000000000123.jpg", "<image>\nWhat?", "Just a dog."),
        ],
    )
    count, box, plain = collect(LlavaCot, path)
    assert (count.source_id, count.question, count.answer, count.reward_type) == (
        "coco-1",
        "How many dogs are there?",
        "2",
        None,
    )
    assert count.context == {"subset": "coco", "caption": "Two dogs on grass."}
    assert count.image.load() == red
    assert (box.answer, box.reward_type) == ("[0.1, 0.2, 0.9, 0.95]", "iou")
    assert box.context == {"subset": "vg", "caption": "A green square."}
    assert box.image.load() == green
    assert (plain.answer, plain.context) == ("Just a dog.", {"subset": "coco"})


GEO_HUMAN = (
    "<image>\nFirst perform reasoning, then finally select the question from the choices in "
    "the following format: Answer: xxx.\nQuestion: As shown in the figure, AB ∥ CD, angle 1 = "
    "50°, then angle 2 is ()\nChoices:\nA:40°\nB:50°\nC:60°\nD:70°"
)


def test_geoqa170k_cleans_the_question_and_takes_the_last_answer(ds):
    white = ds.image("images/geoqa_plus/1234.png", WHITE)
    solution = (
        "Since AB ∥ CD, one might think Answer: A. But angle 2 = 180° - 50° - 70° = 60°.\nAnswer:C"
    )
    turns = [{"from": "human", "value": GEO_HUMAN}, {"from": "gpt", "value": solution}]
    path = ds.json("qa_tuning.json", [{"image": "geoqa_plus/1234.png", "conversations": turns}])
    [sample] = collect(GeoQA170K, path, images=ds.root / "images")
    question = (
        "Question: As shown in the figure, AB ∥ CD, angle 1 = 50°, then angle 2 is ()\n"
        "Choices:\nA:40°\nB:50°\nC:60°\nD:70°"
    )
    assert sample.question == question
    assert (sample.answer, sample.reward_type) == ("C", "choice")
    assert sample.context == {
        "choices": {"A": "40°", "B": "50°", "C": "60°", "D": "70°"},
        "solution": solution,
        "rl_only": True,
    }
    assert sample.source_id == content_id("geoqa_plus/1234.png", question)
    assert sample.image.load() == white


@pytest.mark.parametrize(
    ("reply", "answer"),
    [("so it is 60°. Answer: (D)", "D"), ("Answer: B:50°.", "B"), ("no marker here", None)],
)
def test_geoqa170k_answer_forms(ds, reply, answer):
    turns = [{"from": "human", "value": GEO_HUMAN}, {"from": "gpt", "value": reply}]
    path = ds.json("qa_tuning.json", [{"image": "geoqa_plus/1.png", "conversations": turns}])
    [sample] = collect(GeoQA170K, path)
    assert sample.answer == answer


def test_malformed_rows_become_row_rejected(ds):
    ok = [{"from": "human", "value": "<image>\nQ?"}, {"from": "gpt", "value": "A."}]
    path = ds.jsonl(
        "train.jsonl",
        [
            {"id": "no-conv", "image": "coco/1.jpg"},
            {"id": "no-gpt", "image": "coco/1.jpg", "conversations": [ok[0]]},
            "{not json",
            {"image": 12, "conversations": ok},
            {"id": "fine", "image": "coco/1.jpg", "conversations": ok},
        ],
    )
    no_conv, no_gpt, bad_line, bad_image, fine = collect(LlavaCot, path)
    assert (no_conv.row_key, no_conv.reason) == ("no-conv", "malformed_row")
    assert no_conv.detail == "'conversations' is missing or not a list of turns"
    assert no_conv.row == {"id": "no-conv", "image": "coco/1.jpg"}
    assert (no_gpt.row_key, no_gpt.reason) == ("no-gpt", "malformed_row")
    assert no_gpt.detail == "'conversations' has no gpt turn after the human turn"
    assert (bad_line.row_key, bad_line.reason) == ("line-3", "malformed_row")
    assert (bad_image.row_key, bad_image.reason) == ("row-3", "image_unreadable")
    assert isinstance(fine, RawSample) and fine.answer == "A."
    assert all(isinstance(r, RowRejected) for r in (no_conv, no_gpt, bad_line, bad_image))


def test_arxivqa_options_that_are_not_a_list_are_malformed(ds):
    path = ds.jsonl("a.jsonl", [{"id": "q", "image": "a.png", "question": "Q", "options": "A) x"}])
    [rejected] = collect(ArxivQA, path)
    assert rejected == RowRejected(
        "q", "malformed_row", "options is a str, not a list", rejected.row
    )


def test_missing_fields_pass_none_for_the_collect_step(ds):
    path = ds.jsonl("docvqa.jsonl", [{"questionId": 1, "answers": ["x"]}])
    [sample] = collect(DocVQA, path)
    assert (sample.question, sample.image, sample.answer) == (None, None, "x")


def test_conversation_helpers():
    assert strip_image_token("<image>\nWhat is it?") == "What is it?"
    assert strip_image_token("What is it?\n<image>") == "What is it?"
    assert strip_image_token("a <image> b") == "a <image> b"
    assert boxed("x \\boxed{\\frac{a}{b}} y") == "\\frac{a}{b}"
    assert boxed("\\boxed{unclosed") is None
    assert answer_line("Answer: 4.\nthen Answer: 5.") == "5"
    assert answer_line("The answer is 5") is None
