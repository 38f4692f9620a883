"""``run_eval`` end to end: the tiny Qwen2-VL generating on the pipeline's own hf export, and a
served model behind the scripted OpenAI-compatible server answering with the gold."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.evaluation.conftest import GOLD, answer_with_gold, export_ids
from vlaa_data.chat_format import SYSTEM_PROMPT
from vlaa_data.errors import VlaaError
from vlaa_data.evaluation import EvalOptions, GenerationSettings, default_output, run_eval
from vlaa_data.rewards.math_pool import MathVerifier
from vlaa_data.rewards.registry import score
from vlaa_data.testing.server import ScriptedServer

TINY = GenerationSettings(batch_size=4, max_new_tokens=8)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_eval_on_four_samples_writes_the_report_and_the_per_sample_file(
    tiny_vlm: Path, hf_export: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out" / "eval.jsonl"
    options = EvalOptions(str(tiny_vlm), hf_export, limit=4, generation=TINY, output=output)

    report = run_eval(options)

    samples = read_jsonl(output)
    assert [s["id"] for s in samples] == export_ids(hf_export, "rl")[:4]
    assert all(s["completion"] for s in samples)
    with MathVerifier() as math:
        for sample in samples:
            assert sample["gold"] == GOLD[sample["id"]]
            expected = score(sample["reward_type"], sample["completion"], sample["gold"], math=math)
            assert sample["reward"] == expected
            assert sample["correct"] == (expected == 1.0)
    data = report.to_dict()
    assert (data["model"], data["split"], data["limit"]) == (str(tiny_vlm), "rl", 4)
    assert data["output"] == str(output)
    assert data["generation"]["max_new_tokens"] == 8
    assert data["generation"]["temperature"] == 0.0
    assert data["overall"]["n"] == data["overall"]["scored"] == 4
    assert set(data["by_type"]) == {"digit", "choice"}
    assert {k: v["n"] for k, v in data["by_source"].items()} == {"clevr": 3, "arxiv": 1}
    assert data["overall"]["mean_reward"] == sum(s["reward"] for s in samples) / 4
    assert data["seconds"] >= data["generation_seconds"] > 0
    assert data["samples_per_s"] > 0


def test_the_sft_split_and_a_rerun_that_replaces_the_file(
    tiny_vlm: Path, hf_export: Path, tmp_path: Path
) -> None:
    output = tmp_path / "eval.jsonl"
    output.write_text("an earlier run\n" * 10)
    options = EvalOptions(str(tiny_vlm), hf_export, split="sft", generation=TINY, output=output)

    report = run_eval(options)

    assert report.overall.n == 3
    assert [s["id"] for s in read_jsonl(output)] == export_ids(hf_export, "sft")
    assert list(tmp_path.iterdir()) == [output]  # no temporary file left behind


@pytest.mark.parametrize(
    ("make_folder", "split", "message"),
    [
        (lambda p: p / "missing", "rl", "no such folder"),
        (lambda p: p, "rl", "is not an hf export"),
        (lambda p: p, "dev", "unknown split 'dev'"),
    ],
    ids=["missing", "not-an-export", "unknown-split"],
)
def test_a_folder_that_is_not_an_export_fails_in_one_line(
    tmp_path: Path, make_folder, split: str, message: str
) -> None:
    with pytest.raises(VlaaError, match=message) as caught:
        run_eval(EvalOptions("unused", make_folder(tmp_path), split=split))
    assert "\n" not in str(caught.value)


def test_eval_defaults_to_the_held_out_test_split(hf_export: Path, tmp_path: Path) -> None:
    """With a test split the default is it; without one, rl with a note (not a silent swap)."""
    with_test = tmp_path / "with_test"
    (with_test / "data").mkdir(parents=True)
    for shard in (hf_export / "data").glob("*.parquet"):
        (with_test / "data" / shard.name).write_bytes(shard.read_bytes())
    test_shard = sorted((hf_export / "data").glob("sft-*.parquet"))[0]
    (with_test / "data" / "test-00000-of-00001-0123456789abcdef.parquet").write_bytes(
        test_shard.read_bytes()
    )
    with ScriptedServer(answer_with_gold) as server:
        settings = GenerationSettings(backend="openai", base_url=server.url, batch_size=2)
        held_out = run_eval(
            EvalOptions("m", with_test, generation=settings, output=tmp_path / "a.jsonl")
        )
        fallback = run_eval(
            EvalOptions("m", hf_export, generation=settings, output=tmp_path / "b.jsonl")
        )
    assert (held_out.split, held_out.note) == ("test", None)
    assert [s["id"] for s in read_jsonl(tmp_path / "a.jsonl")] == export_ids(with_test, "test")
    assert held_out.to_dict()["note"] is None
    assert fallback.split == "rl"
    assert fallback.note.startswith(f"{hf_export} has no test split: evaluating on rl, the split")
    assert fallback.to_dict()["note"] == fallback.note
    assert [s["id"] for s in read_jsonl(tmp_path / "b.jsonl")] == export_ids(hf_export, "rl")


def test_a_missing_split_is_named(hf_export: Path, tmp_path: Path) -> None:
    only_sft = tmp_path / "only_sft"
    (only_sft / "data").mkdir(parents=True)
    for shard in (hf_export / "data").glob("sft-*.parquet"):
        (only_sft / "data" / shard.name).write_bytes(shard.read_bytes())
    with pytest.raises(VlaaError, match=r"has no rl split \(it has: sft\)"):
        run_eval(EvalOptions("unused", only_sft))


def test_eval_on_a_lora_adapter_folder_scores_what_the_merged_model_does(
    tiny_vlm: Path, hf_export: Path, tmp_path: Path
) -> None:
    """The adapter folder names its base (a local path here): eval loads it, applies the
    adapter, and generates exactly what the same adapter merged and saved generates."""
    from vlaa_data.hf import load_processor, merge_adapter
    from vlaa_data.testing.tiny_vlm import build_tiny_adapter

    adapter = build_tiny_adapter(tiny_vlm, tmp_path / "adapter")
    merged = merge_adapter(adapter, tmp_path / "merged")
    load_processor(adapter).save_pretrained(merged)
    completions = {}
    for name, model in (("adapter", adapter), ("merged", merged), ("base", tiny_vlm)):
        output = tmp_path / f"{name}.jsonl"
        report = run_eval(EvalOptions(str(model), hf_export, generation=TINY, output=output))
        assert report.overall.n == report.overall.scored == 4
        assert report.overall.mean_reward is not None
        completions[name] = [s["completion"] for s in read_jsonl(output)]
    assert completions["adapter"] == completions["merged"]
    assert completions["adapter"] != completions["base"]  # the adapter was applied


def test_the_vllm_backend_refuses_an_adapter_folder_in_one_line(
    tiny_vlm: Path, tmp_path: Path
) -> None:
    from vlaa_data.evaluation.generate import open_backend
    from vlaa_data.testing.tiny_vlm import build_tiny_adapter

    adapter = build_tiny_adapter(tiny_vlm, tmp_path / "adapter")
    with pytest.raises(
        VlaaError, match="is a LoRA adapter: evaluate it with --backend transformers"
    ):
        open_backend(str(adapter), GenerationSettings(backend="vllm"))


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed")
def test_the_vllm_backend_without_vllm_names_the_extra(hf_export: Path) -> None:
    settings = GenerationSettings(backend="vllm")
    with pytest.raises(VlaaError, match=r"pip install 'vlaa-data\[gpu\]'"):
        run_eval(EvalOptions("some/model", hf_export, generation=settings))


def test_a_model_behind_an_openai_compatible_endpoint(
    hf_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with ScriptedServer(answer_with_gold) as server:
        settings = GenerationSettings(backend="openai", base_url=server.url, batch_size=2)
        report = run_eval(EvalOptions("my-grpo-checkpoint", hf_export, generation=settings))

    assert Path(report.output) == default_output("my-grpo-checkpoint", "rl")
    samples = {s["id"]: s for s in read_jsonl(tmp_path / "eval-my-grpo-checkpoint-rl.jsonl")}
    assert list(samples) == export_ids(hf_export, "rl")
    assert samples["clevr/c2"]["answer"] == GOLD["clevr/c2"] == "4"
    refused = samples["arxiv/a2"]
    assert (refused["completion"], refused["reward"], refused["correct"]) == ("", None, None)
    assert refused["note"].startswith("bad_request: ")
    # the refused row is unscored, not wrong
    assert (report.overall.n, report.overall.scored, report.overall.failed) == (4, 3, 1)
    assert report.overall.accuracy == report.by_type["digit"].accuracy == 1.0
    assert report.by_source["arxiv"].accuracy is None

    request = server.requests[0]
    assert request["model"] == "my-grpo-checkpoint"
    assert (request["max_tokens"], request["temperature"]) == (2048, 0.0)
    system, user = request["messages"]
    assert system == {"role": "system", "content": SYSTEM_PROMPT}
    assert user["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")


def test_default_output_is_named_after_the_model_in_the_current_folder() -> None:
    assert default_output("/ckpt/run-3/checkpoint-500/", "rl") == Path(
        "eval-checkpoint-500-rl.jsonl"
    )
    assert default_output("Qwen/Qwen2-VL-2B-Instruct", "sft") == Path(
        "eval-Qwen2-VL-2B-Instruct-sft.jsonl"
    )


def _image_pixels(url: str) -> int:
    import base64
    import io

    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as image:
        return image.width * image.height


def test_eval_prompts_with_the_exports_own_prompt(
    hf_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model gets the export's ``prompt`` column as it is: a system prompt changed in the
    export reaches the endpoint, and each question keeps its task instruction. Images sent to
    an endpoint are downscaled to ``max_pixels``."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from vlaa_data.chat_format import MULTIPLE_CHOICE, SHORT_ANSWER

    custom = tmp_path / "custom"
    shutil.copytree(hf_export, custom)
    exported = []
    for shard in sorted((custom / "data").glob("rl-*.parquet")):
        table = pq.read_table(shard)
        rows = table.to_pylist()
        for row in rows:
            row["prompt"][0]["content"][0]["text"] = "Custom system prompt."
            exported.append(row["prompt"][1]["content"][1]["text"])
        pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
    monkeypatch.chdir(tmp_path)
    with ScriptedServer(answer_with_gold) as server:
        settings = GenerationSettings(backend="openai", base_url=server.url, max_pixels=100)
        run_eval(EvalOptions("served", custom, split="rl", generation=settings))

    assert len(server.requests) >= len(exported) == 4
    users = set()
    for request in server.requests:
        system, user = request["messages"]
        assert system == {"role": "system", "content": "Custom system prompt."}
        image, text = user["content"]
        users.add(text["text"])
        assert _image_pixels(image["image_url"]["url"]) <= 100 < 32 * 24  # the export's images
    assert users == set(exported)
    assert any(t.endswith(MULTIPLE_CHOICE) for t in users)
    assert any(t.endswith(SHORT_ANSWER) for t in users)


def test_the_in_process_models_processor_resizes_to_max_pixels(tiny_vlm: Path) -> None:
    """A 400 x 400 image: the tiny model's own cap (112 x 112) makes 16 tokens of it, the
    default (the paper's 256 x 32 x 32 pixels) 196, a 56 x 56 cap 4."""
    import asyncio

    from vlaa_data.evaluation.generate import open_backend

    def tokens(settings: GenerationSettings) -> int:
        backend, _ = open_backend(str(tiny_vlm), settings)
        try:
            processor = backend._processor  # type: ignore[attr-defined]
            counts = processor._get_num_multimodal_tokens(image_sizes=[(400, 400)])
            return counts["num_image_tokens"][0]
        finally:
            asyncio.run(backend.aclose())

    assert GenerationSettings().max_pixels == 256 * 32 * 32
    assert tokens(GenerationSettings(device="cpu")) == 196
    assert tokens(GenerationSettings(device="cpu", max_pixels=None)) == 16
    assert tokens(GenerationSettings(device="cpu", max_pixels=56 * 56)) == 4
