"""Each adapter end to end: a file shaped like the real one, collected into a workspace."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import query
from tests.sources.conftest import DatasetWriter
from tests.test_collect import run_collect


def _clevr(ds: DatasetWriter) -> Path:
    ds.image("images/CLEVR_train_000001.png", (10, 10, 10))
    ds.image("images/CLEVR_train_000002.png", (20, 20, 20))
    ds.json(
        "CLEVR_train_scenes.json",
        {
            "scenes": [
                {
                    "image_filename": "CLEVR_train_000001.png",
                    "objects": [
                        {"color": "red", "size": "large", "shape": "cube", "material": "rubber"}
                    ],
                }
            ]
        },
    )
    return ds.jsonl(
        "clevr-math.jsonl",
        [
            {
                "template": "subtraction",
                "id": "1",
                "question": "Subtract all red cubes. How many objects are left?",
                "image": "images/CLEVR_train_000001.png",
                "label": 0,
            },
            {
                "template": "addition",
                "id": "2",
                "question": "Add 1 ball. How many?",
                "image": "images/CLEVR_train_000002.png",
                "label": 3,
            },
        ],
    )


def _puma(ds: DatasetWriter) -> Path:
    ds.image("img/p1.png", (1, 90, 1))
    ds.image("img/p2.png", (2, 90, 2))
    return ds.json(
        "train.json",
        [
            {
                "image": "img/p1.png",
                "question": "Solve for x.",
                "answer": "x = 3",
                "text_question": "Solve 2x = 6 for x.",
            },
            {"image": "img/p2.png", "question": "Which is right?", "answer": "B"},
        ],
    )


def _arxivqa(ds: DatasetWriter) -> Path:
    ds.image("images/fig1.png", (200, 1, 1))
    ds.image("images/fig2.png", (201, 1, 1))
    return ds.jsonl(
        "arxivqa.jsonl",
        [
            {
                "id": "x1",
                "image": "images/fig1.png",
                "question": "Trend?",
                "options": ["A) up", "B) down"],
                "label": "A)",
                "rationale": "It rises.",
            },
            {
                "id": "x2",
                "image": "images/fig2.png",
                "question": "Peak?",
                "options": ["(a) 1", "(b) 2"],
                "label": "(b)",
                "rationale": "",
            },
        ],
    )


def _docvqa(ds: DatasetWriter) -> Path:
    ds.image("documents/d1.png", (250, 250, 1))
    ds.image("documents/d2.png", (250, 250, 2))
    return ds.json(
        "val_v1.0.json",
        {
            "dataset_name": "docvqa",
            "data": [
                {
                    "questionId": 1,
                    "question": "Date?",
                    "image": "documents/d1.png",
                    "docId": 9,
                    "answers": ["1 May"],
                },
                {
                    "questionId": 2,
                    "question": "Name?",
                    "image": "documents/d2.png",
                    "docId": 9,
                    "answers": ["Bo", "BO"],
                },
            ],
        },
    )


def _vizwiz(ds: DatasetWriter) -> Path:
    ds.image("VizWiz_train_00000001.jpg", (3, 3, 200), fmt="JPEG")
    ds.image("VizWiz_train_00000002.jpg", (3, 3, 100), fmt="JPEG")
    answers = [{"answer": "soup", "answer_confidence": "yes"}] * 6 + [
        {"answer": "can", "answer_confidence": "maybe"}
    ] * 4
    return ds.json(
        "train.json",
        [
            {
                "image": "VizWiz_train_00000001.jpg",
                "question": "What is this?",
                "answers": answers,
                "answer_type": "other",
                "answerable": 1,
            },
            {
                "image": "VizWiz_train_00000002.jpg",
                "question": "Colour?",
                "answers": [{"answer": "blue", "answer_confidence": "yes"}],
                "answer_type": "other",
                "answerable": 1,
            },
        ],
    )


def _allava(ds: DatasetWriter) -> Path:
    ds.image("allava_laion/images/1.jpeg", (9, 1, 9), fmt="JPEG")
    ds.image("allava_laion/images/2.jpeg", (9, 2, 9), fmt="JPEG")
    convo = [
        {"from": "human", "value": "<image>\nWhat is shown?"},
        {"from": "gpt", "value": "A cat."},
    ]
    ds.json(
        "allava_laion/ALLaVA-Caption-LAION-4V.json",
        [
            {
                "id": "allava_laion_cap_1",
                "image": "allava_laion/images/1.jpeg",
                "conversations": [
                    {"from": "human", "value": "<image>\nDescribe."},
                    {"from": "gpt", "value": "A cat on a mat."},
                ],
            }
        ],
    )
    return ds.json(
        "allava_laion/ALLaVA-Instruct-LAION-4V.json",
        [
            {
                "id": "allava_laion_inst_1",
                "image": "allava_laion/images/1.jpeg",
                "conversations": convo,
            },
            {
                "id": "allava_laion_inst_2",
                "image": "allava_laion/images/2.jpeg",
                "conversations": convo,
            },
        ],
    )


def _llava_cot(ds: DatasetWriter) -> Path:
    ds.image("coco/train2017/1.jpg", (5, 60, 5), fmt="JPEG")
    ds.image("vg/VG_100K/2.jpg", (5, 61, 5), fmt="JPEG")

    def reply(answer: str) -> str:
        return (
            f"<SUMMARY>s</SUMMARY>\n\n<CAPTION>c</CAPTION>\n\n<REASONING>r</REASONING>"
            f"\n\n<CONCLUSION>{answer}</CONCLUSION>"
        )

    return ds.jsonl(
        "train.jsonl",
        [
            {
                "id": "c1",
                "image": "coco/train2017/1.jpg",
                "conversations": [
                    {"from": "human", "value": "Box of the dog?"},
                    {"from": "gpt", "value": reply("[0.1, 0.2, 0.5, 0.6]")},
                ],
            },
            {
                "id": "v2",
                "image": "vg/VG_100K/2.jpg",
                "conversations": [
                    {"from": "human", "value": "What colour is the bus?"},
                    {"from": "gpt", "value": reply("Red.")},
                ],
            },
        ],
    )


def _geoqa(ds: DatasetWriter) -> Path:
    ds.image("geoqa_plus/1.png", (70, 70, 70))
    ds.image("geoqa_plus/2.png", (71, 71, 71))
    prompt = (
        "<image>\nFirst perform reasoning, then finally select the question from the "
        "choices in the following format: Answer: xxx.\nQuestion: As shown in the figure, "
        "find the angle.\nChoices:\nA:40°\nB:50°"
    )
    return ds.json(
        "qa_tuning.json",
        [
            {
                "image": "geoqa_plus/1.png",
                "conversations": [
                    {"from": "human", "value": prompt},
                    {"from": "gpt", "value": "So... Answer: B"},
                ],
            },
            {
                "image": "geoqa_plus/2.png",
                "conversations": [
                    {"from": "human", "value": prompt},
                    {"from": "gpt", "value": "Answer: A"},
                ],
            },
        ],
    )


CASES: dict[str, tuple[Callable[[DatasetWriter], Path], list[tuple[str, str]]]] = {
    "clevr-math": (_clevr, [("0", "digit"), ("3", "digit")]),
    "math-puma": (_puma, [("B", "choice"), ("x = 3", "math")]),
    "arxivqa": (_arxivqa, [("A", "choice"), ("B", "choice")]),
    "docvqa": (_docvqa, [("1 May", "open"), ("Bo", "open")]),
    "vizwiz": (_vizwiz, [("blue", "open"), ("soup", "open")]),
    "allava-laion": (_allava, [("A cat.", "open"), ("A cat.", "open")]),
    "llava-cot": (_llava_cot, [("Red.", "open"), ("[0.1, 0.2, 0.5, 0.6]", "iou")]),
    "geoqa170k": (_geoqa, [("A", "choice"), ("B", "choice")]),
}


@pytest.mark.parametrize("adapter", sorted(CASES))
def test_adapter_collects_into_a_workspace(adapter: str, ds: DatasetWriter, workspace: Path):
    build, expected = CASES[adapter]
    path = build(ds)
    report = run_collect(workspace, adapter, str(path))
    assert (report.collected, dict(report.rejected)) == (2, {})
    rows = query(workspace, "SELECT source, answer, reward_type FROM samples ORDER BY 2, 3")
    assert rows == [(adapter, a, r) for a, r in expected]
    assert run_collect(workspace, adapter, str(path)).collected == 0


def test_adapter_context_reaches_the_database(ds: DatasetWriter, workspace: Path) -> None:
    run_collect(workspace, "clevr-math", str(_clevr(ds)))
    context = json.loads(
        query(workspace, "SELECT context FROM samples WHERE source_id = '1'")[0][0]
    )
    assert context["scene"] == [
        {"color": "red", "size": "large", "shape": "cube", "material": "rubber"}
    ]


def test_adapter_through_the_cli(ds: DatasetWriter, workspace: Path, cli) -> None:
    result = cli("collect", "geoqa170k", _geoqa(ds), "--json", "-w", workspace)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["collected"] == 2
    status = json.loads(cli("status", "--json", "-w", workspace).stdout)
    assert status["sources"] == {"geoqa170k": 2}
