"""The PPL filter on the tiny random Qwen2-VL, on CPU."""

from __future__ import annotations

import importlib.machinery
import json
import math
import os
import sys
from pathlib import Path

import pytest
from PIL import Image

from vlaa_data.chat_format import SYSTEM_PROMPT, TASK_INSTRUCTIONS, assistant_text, user_text
from vlaa_data.errors import VlaaError
from vlaa_data.filters.ppl import PplOptions, run_ppl, score_name
from vlaa_data.workspace import Workspace

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def other_vlm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny Qwen2-VL: the same tokenizer, other random weights."""
    from vlaa_data.testing.tiny_vlm import build_tiny_qwen2vl

    return build_tiny_qwen2vl(tmp_path_factory.mktemp("other_vlm"), seed=1)


def _ppl(root: Path, model: Path, **options) -> tuple[dict, dict[str, tuple[float, dict]]]:
    """Run the filter; returns the report and every score of ``model`` by sample."""
    with Workspace.open(root, write=True) as ws:
        report = run_ppl(ws, PplOptions(models=[str(model)], **options))
        name = score_name(str(model), options.get("target", "response"))
        rows = ws.store.con.execute(
            "SELECT sample_id, value, detail FROM scores WHERE name = ?", [name]
        ).fetchall()
    return report.to_dict(), {r[0]: (r[1], json.loads(r[2])) for r in rows}


def _hand_ppl(root: Path, model_dir: Path) -> dict[str, float]:
    """PPL of every sample's response, computed apart from the filter: the prompt and the full
    conversation through the processor, one right-padded batch, prompt and padding masked."""
    from vlaa_data.hf import processor_without_video

    processor = processor_without_video(transformers.Qwen2VLProcessor).from_pretrained(model_dir)
    processor.tokenizer.padding_side = "right"
    model = transformers.Qwen2VLForConditionalGeneration.from_pretrained(model_dir).eval()
    with Workspace.open(root, write=False) as ws:
        texts = ws.store.scored_texts()
    images = [Image.open(root / t.image_path).convert("RGB") for t in texts]
    prompt_lengths, fulls = [], []
    for text, image in zip(texts, images, strict=True):
        user = [
            {"type": "image"},
            {"type": "text", "text": user_text(text.question, text.reward_type)},
        ]
        messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        reply = assistant_text(text.reasoning, text.response)
        messages.append({"role": "assistant", "content": reply})
        fulls.append(processor.apply_chat_template(messages, tokenize=False))
        prompt_ids = processor(text=[prompt], images=[image], return_tensors="pt")["input_ids"]
        prompt_lengths.append(prompt_ids.shape[1])
    inputs = processor(text=fulls, images=images, padding=True, return_tensors="pt")
    labels = inputs["input_ids"].clone()
    labels[inputs["attention_mask"] == 0] = -100
    for row, length in enumerate(prompt_lengths):
        labels[row, :length] = -100
    assert (inputs["attention_mask"] == 0).any(), "the batch should need padding"
    with torch.no_grad():
        logits = model(**inputs).logits.float()
    losses = torch.nn.functional.cross_entropy(
        logits[:, :-1].transpose(1, 2), labels[:, 1:], ignore_index=-100, reduction="none"
    )
    counts = (labels[:, 1:] != -100).sum(dim=1)
    means = losses.sum(dim=1) / counts
    return {t.sample_id: math.exp(m) for t, m in zip(texts, means.tolist(), strict=True)}


def test_ppl_equals_a_hand_computation(text_workspace: Path, tiny_vlm: Path) -> None:
    report, scores = _ppl(text_workspace, tiny_vlm, batch_size=4)
    expected = _hand_ppl(text_workspace, tiny_vlm)
    assert report["models"][0]["scored"] == len(expected) == 6
    for sample_id, value in expected.items():
        assert scores[sample_id][0] == pytest.approx(value, rel=1e-4)
        assert scores[sample_id][1]["nll"] == pytest.approx(math.log(value), rel=1e-4)
    # A random model is about as unsure as its vocabulary is large.
    assert 200 < report["models"][0]["mean_ppl"] < 500


def test_ppl_scores_the_conversation_an_hf_export_trains_on(
    workspace: Path, tmp_path: Path, tiny_vlm: Path
) -> None:
    """PPL runs before any export, so it builds the prompt as the export does: each sample's
    conversation is the export's ``messages`` (system prompt, question and task instruction,
    answer) through the chat template."""
    import pyarrow.parquet as pq

    from tests.release.conftest import build_release, build_verified_workspace
    from vlaa_data.filters.ppl import _items
    from vlaa_data.hf import load_processor
    from vlaa_data.release.export import export_release

    build_release(build_verified_workspace(workspace, tmp_path))
    with Workspace.open(workspace, write=True) as ws:
        export_release(ws, "v1", "hf", tmp_path / "hf")
        texts = ws.store.scored_texts()
    rows = [
        row
        for shard in (tmp_path / "hf" / "data").glob("*.parquet")
        for row in pq.read_table(shard).to_pylist()
    ]
    exported = {row["id"]: row["messages"] for row in rows}
    processor = load_processor(tiny_vlm)
    items = _items(workspace, texts, processor, "response", lambda item, reason: None)
    compared = [item for item in items if item.text.sample_id in exported]
    assert len(compared) == len(exported) >= 6
    for item in compared:
        assert item.full == processor.apply_chat_template(
            exported[item.text.sample_id], tokenize=False
        )
    instructions = {i for i in TASK_INSTRUCTIONS.values() if any(i in t.full for t in compared)}
    assert len(instructions) == 2  # digit and choice rows: both instructions were compared


def test_max_pixels_caps_the_image_tokens_the_model_sees(
    text_workspace: Path, tiny_vlm: Path
) -> None:
    """The processor PPL runs gets ``max_pixels``: a large image makes fewer tokens, and
    exactly the samples whose image it shrinks get other scores."""
    from vlaa_data.filters.ppl import _transformers

    def tokens(max_pixels: int | None, sizes: list[tuple[int, int]]) -> list[int]:
        options = PplOptions(models=[str(tiny_vlm)], max_pixels=max_pixels, device="cpu")
        processor = _transformers(str(tiny_vlm), options, text_workspace).processor
        return processor._get_num_multimodal_tokens(image_sizes=sizes)["num_image_tokens"]

    cap = 56 * 56
    assert tokens(None, [(400, 400)]) == [16] and tokens(cap, [(400, 400)]) == [4]
    _, full = _ppl(text_workspace, tiny_vlm, max_pixels=None)
    _, capped = _ppl(text_workspace, tiny_vlm, max_pixels=cap, redo=True)
    assert {detail["max_pixels"] for _, detail in capped.values()} == {cap}
    with Workspace.open(text_workspace, write=False) as ws:
        texts = ws.store.scored_texts()
    sizes = []
    for text in texts:
        with Image.open(text_workspace / text.image_path) as image:
            sizes.append((image.height, image.width))
    shrunk = [a != b for a, b in zip(tokens(None, sizes), tokens(cap, sizes), strict=True)]
    assert any(shrunk) and not all(shrunk)
    for text, smaller in zip(texts, shrunk, strict=True):
        same = capped[text.sample_id][0] == pytest.approx(full[text.sample_id][0], rel=1e-6)
        assert same != smaller, text.sample_id


def test_batching_does_not_change_the_values(text_workspace: Path, tiny_vlm: Path) -> None:
    _, alone = _ppl(text_workspace, tiny_vlm, batch_size=1)
    _, batched = _ppl(text_workspace, tiny_vlm, batch_size=4, redo=True)
    assert len({detail["tokens"] for _, detail in alone.values()}) > 3  # lengths do differ
    assert alone.keys() == batched.keys()
    for sample_id, (value, detail) in alone.items():
        assert batched[sample_id][0] == pytest.approx(value, rel=1e-5)
        assert batched[sample_id][1]["tokens"] == detail["tokens"]


def test_rerun_scores_only_what_is_missing(text_workspace: Path, tiny_vlm: Path) -> None:
    first, scores = _ppl(text_workspace, tiny_vlm, limit=2)
    assert (first["models"][0]["selected"], first["models"][0]["scored"]) == (2, 2)
    assert len(scores) == 2
    second, scores = _ppl(text_workspace, tiny_vlm)
    assert (second["models"][0]["selected"], second["models"][0]["scored"]) == (4, 4)
    assert len(scores) == 6
    third, _ = _ppl(text_workspace, tiny_vlm)
    assert (third["models"][0]["selected"], third["models"][0]["scored"]) == (0, 0)
    redo, _ = _ppl(text_workspace, tiny_vlm, redo=True)
    assert redo["models"][0]["scored"] == 6
    with Workspace.open(text_workspace, write=False) as ws:
        runs = ws.store.con.execute(
            "SELECT status FROM runs WHERE command = 'vlaa-data filter ppl'"
        ).fetchall()
        latest = ws.store.con.execute("SELECT DISTINCT run_id FROM scores").fetchall()
    assert runs == [("finished",)] * 4
    assert latest == [(redo["run_id"],)]


def test_two_models_are_averaged_in_samples_view(
    text_workspace: Path, tiny_vlm: Path, other_vlm: Path
) -> None:
    with Workspace.open(text_workspace, write=True) as ws:
        report = run_ppl(ws, PplOptions(models=[str(tiny_vlm), f"{other_vlm}/"], batch_size=3))
        rows = ws.store.con.execute(
            "SELECT sample_id, name, value FROM scores ORDER BY sample_id, name"
        ).fetchall()
        view = ws.store.con.execute("SELECT id, ppl, ppl_models FROM samples_view").fetchall()
    assert [m["scored"] for m in report.to_dict()["models"]] == [6, 6]
    names = {score_name(str(tiny_vlm)), f"ppl:{other_vlm}"}  # the trailing slash is dropped
    by_sample: dict[str, dict[str, float]] = {}
    for sample_id, name, value in rows:
        by_sample.setdefault(sample_id, {})[name] = value
    assert len(view) == len(by_sample) == 6
    for sample_id, ppl, models in view:
        assert set(by_sample[sample_id]) == names
        first, second = by_sample[sample_id].values()
        assert first != pytest.approx(second, rel=1e-3)  # different weights, different PPL
        assert (ppl, models) == (pytest.approx((first + second) / 2), 2)


def test_answer_target_scores_only_the_answer(text_workspace: Path, tiny_vlm: Path) -> None:
    _, response = _ppl(text_workspace, tiny_vlm)
    report, answer = _ppl(text_workspace, tiny_vlm, target="answer")
    assert report["models"][0]["score"] == f"ppl_answer:{tiny_vlm}"
    assert answer.keys() == response.keys()
    for sample_id, (_, detail) in answer.items():
        assert detail["target"] == "answer"
        assert 0 < detail["tokens"] < response[sample_id][1]["tokens"]
    with Workspace.open(text_workspace, write=False) as ws:
        view = dict(ws.store.con.execute("SELECT id, ppl FROM samples_view").fetchall())
    # samples_view averages ppl: scores only; the answer's PPL does not enter it
    assert view == pytest.approx({k: v for k, (v, _) in response.items()})


def test_an_unreadable_image_fails_alone(text_workspace: Path, tiny_vlm: Path) -> None:
    with Workspace.open(text_workspace, write=False) as ws:
        victim = ws.store.scored_texts()[2]
    os.remove(text_workspace / victim.image_path)
    report, scores = _ppl(text_workspace, tiny_vlm, batch_size=4)
    assert report["models"][0]["scored"] == 5 and report["models"][0]["failed"] == 1
    [failure] = report["failures"]
    assert failure["sample_id"] == victim.sample_id
    assert "cannot open image" in failure["reason"]
    assert victim.sample_id not in scores and len(scores) == 5


def test_a_sample_failing_in_its_batch_fails_alone(
    text_workspace: Path, tiny_vlm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Workspace.open(text_workspace, write=False) as ws:
        victim = ws.store.scored_texts()[4]
    # The header still reads, so the image fails only when its batch is processed.
    path = text_workspace / victim.image_path
    path.write_bytes(path.read_bytes()[:60])
    report, scores = _ppl(text_workspace, tiny_vlm, batch_size=6)
    [failure] = report["failures"]
    assert failure == {
        "model": str(tiny_vlm),
        "sample_id": victim.sample_id,
        "reason": "OSError: image file is truncated",
    }
    assert len(scores) == 5


def test_bad_options_and_missing_vllm_are_user_errors(text_workspace: Path, tiny_vlm: Path) -> None:
    with pytest.raises(VlaaError, match="target"):
        _ppl(text_workspace, tiny_vlm, target="reasoning")
    with pytest.raises(VlaaError, match="models"), Workspace.open(text_workspace, write=True) as ws:
        run_ppl(ws, PplOptions())
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(VlaaError, match=r"vlaa-data\[gpu\]"):
            _ppl(text_workspace, tiny_vlm, backend="vllm")


def test_vllm_backend_reads_the_assistant_tokens_prompt_logprobs(
    text_workspace: Path, tiny_vlm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """vLLM is not installed here: a stand-in engine gives prompt log-probabilities computed by
    the tiny model, in vLLM's shapes, and the filter must pick out the assistant tokens'."""
    import types
    from dataclasses import dataclass

    from vlaa_data.hf import load_model_and_processor

    model, processor = load_model_and_processor(tiny_vlm, device="cpu")

    @dataclass
    class Logprob:
        logprob: float

    class LLM:
        def __init__(self, model: str, **kwargs) -> None:
            # the image size goes to the model's processor in vLLM: the default, the paper's
            mm = {"mm_processor_kwargs": {"max_pixels": 256 * 32 * 32}}
            assert model == str(tiny_vlm) and kwargs == {"enable_prefix_caching": False, **mm}

        def generate(self, prompts, params, use_tqdm):
            assert params == {"max_tokens": 1, "prompt_logprobs": 1}
            outputs = []
            for prompt in prompts:
                image = prompt["multi_modal_data"]["image"]
                inputs = processor(text=[prompt["prompt"]], images=[image], return_tensors="pt")
                ids = inputs["input_ids"][0]
                with torch.no_grad():
                    logprobs = model(**inputs).logits[0].float().log_softmax(-1)
                prompt_logprobs = [None] + [
                    {int(t): Logprob(float(logprobs[i, t])), -1: Logprob(0.0)}
                    for i, t in enumerate(ids[1:].tolist())
                ]
                outputs.append(
                    types.SimpleNamespace(
                        prompt_token_ids=ids.tolist(), prompt_logprobs=prompt_logprobs
                    )
                )
            return outputs

    fake = types.ModuleType("vllm")
    fake.__spec__ = importlib.machinery.ModuleSpec("vllm", None)
    fake.LLM, fake.SamplingParams = LLM, lambda **params: params
    monkeypatch.setitem(sys.modules, "vllm", fake)
    _, expected = _ppl(text_workspace, tiny_vlm)
    report, scores = _ppl(text_workspace, tiny_vlm, backend="vllm", redo=True)
    assert report["models"][0]["scored"] == 6
    for sample_id, (value, detail) in expected.items():
        assert scores[sample_id][0] == pytest.approx(value, rel=1e-4)
        assert scores[sample_id][1]["tokens"] == detail["tokens"]


def test_spliced_inputs_equal_the_processors(tiny_vlm: Path) -> None:
    """The batch built from token ids is what the processor makes of the texts and images."""
    from vlaa_data.filters.ppl_batches import can_splice, spliced_inputs
    from vlaa_data.hf import load_processor

    processor = load_processor(tiny_vlm)
    processor.tokenizer.padding_side = "right"
    assert can_splice(processor)
    sizes = [(28, 28), (29, 450), (448, 31), (112, 112), (300, 200), (57, 85)]
    images = [Image.new("RGB", size, (i * 40, 255 - i * 30, 90)) for i, size in enumerate(sizes)]
    images[3] = Image.effect_noise((112, 112), 64).convert("RGB")  # pixels that vary
    texts = []
    for i in range(len(sizes)):
        user = [{"type": "image"}, {"type": "text", "text": f"How many? {'word ' * i * 7}"}]
        messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]
        messages.append({"role": "assistant", "content": f"<think>count {i}</think> {i}"})
        texts.append(processor.apply_chat_template(messages, tokenize=False))
    expected = processor(
        text=texts, images=images, padding=True, add_special_tokens=False, return_tensors="pt"
    )
    ids = processor.tokenizer(texts, add_special_tokens=False)["input_ids"]
    got = spliced_inputs(processor, ids, images)
    assert set(got) == set(expected.keys())
    for key in ("input_ids", "attention_mask", "mm_token_type_ids", "image_grid_thw"):
        assert torch.equal(got[key], expected[key]), key
    assert len(set(got["image_grid_thw"][:, 1:].flatten().tolist())) > 3  # sizes do differ
    torch.testing.assert_close(got["pixel_values"], expected["pixel_values"], rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="one image token"):
        spliced_inputs(processor, [ids[0] + ids[1]], images[:1])


def test_an_interrupted_run_keeps_what_it_scored(text_workspace: Path, tiny_vlm: Path) -> None:
    """Scores are written every few seconds, not per batch: an interruption must flush them."""

    def stop(stats) -> None:
        raise KeyboardInterrupt

    with Workspace.open(text_workspace, write=True) as ws:
        with pytest.raises(KeyboardInterrupt):
            run_ppl(ws, PplOptions(models=[str(tiny_vlm)], batch_size=2), on_progress=stop)
        scored = ws.store.con.execute("SELECT count(*) FROM scores").fetchone()[0]
        status = ws.store.con.execute(
            "SELECT status FROM runs WHERE command = 'vlaa-data filter ppl'"
        ).fetchall()
    assert scored == 2 and status == [("interrupted",)]
    _, scores = _ppl(text_workspace, tiny_vlm)
    assert len(scores) == 6
