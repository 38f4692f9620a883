"""A tiny random Qwen2-VL (~200k parameters) built offline, for tests of local model code.

Nothing is downloaded: the tokenizer is a byte-level BPE trained on a few sentences, the model
is built from a config with a fixed seed. The folder is saved with ``save_pretrained`` so that
tests load it back exactly as a user's checkpoint is loaded.
"""

from __future__ import annotations

from pathlib import Path

from vlaa_data.hf import processor_without_video, require

__all__ = [
    "CHAT_TEMPLATE",
    "SPECIAL_TOKENS",
    "build_tiny_adapter",
    "build_tiny_qwen2vl",
    "build_tiny_reward_model",
]

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = [
    "How many red circles are in the image? Answer with a number.",
    "The chart shows sales by year; which year had the highest value?",
    "<think>Count the objects one by one, then check again.</think> The answer is \\boxed{3}.",
    "You are a helpful assistant. Describe the image in detail before answering.",
    "Question: what is the area of the triangle? Options: A. 12 B. 24 C. 36 D. 48",
]


def build_tiny_qwen2vl(path: Path, *, seed: int = 0) -> Path:
    """Build the tiny Qwen2-VL, save model and processor into ``path``, and return ``path``."""
    torch = require("torch", "train", "the tiny test model")
    transformers = require("transformers", "train", "the tiny test model")
    tokenizer = _tokenizer(transformers)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    eos, pad = ids["<|im_end|>"], ids["<|endoftext|>"]
    processor_class = processor_without_video(transformers.Qwen2VLProcessor)
    processor = processor_class(
        image_processor=transformers.Qwen2VLImageProcessor(
            min_pixels=56 * 56, max_pixels=112 * 112
        ),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )
    config = transformers.Qwen2VLConfig(
        text_config={
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "vocab_size": len(tokenizer),
            "bos_token_id": pad,
            "eos_token_id": eos,
            "pad_token_id": pad,
            # The sections split head_dim / 2 = 8 rotary frequencies over (time, height, width).
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1e4,
                "mrope_section": [2, 3, 3],
            },
        },
        vision_config={
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": 64,
            "num_heads": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = transformers.Qwen2VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = pad
    model.generation_config.bos_token_id = pad
    path = Path(path)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def build_tiny_adapter(base: Path, path: Path, *, seed: int = 0) -> Path:
    """A LoRA adapter for the tiny Qwen2-VL in ``base``, saved with the processor into ``path``
    as ``train --lora`` saves one. Its weights are random, not zero (peft's default for the
    second matrix), so that applying it changes what the model outputs."""
    torch = require("torch", "train", "the tiny test model")
    transformers = require("transformers", "train", "the tiny test model")
    peft = require("peft", "train", "the tiny test adapter")
    from vlaa_data.hf import load_processor

    model = transformers.AutoModelForImageTextToText.from_pretrained(str(base))
    torch.manual_seed(seed)
    config = peft.LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["q_proj", "v_proj", "down_proj"],
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    path = Path(path)
    peft.get_peft_model(model, config).save_pretrained(path)
    load_processor(base).save_pretrained(path)
    return path


def build_tiny_reward_model(path: Path, *, seed: int = 0) -> Path:
    """A tiny random text reward model (Qwen2 with a one-logit classification head), the
    format of TRL's reward models, saved with its tokenizer into ``path``."""
    torch = require("torch", "train", "the tiny test model")
    transformers = require("transformers", "train", "the tiny test model")
    tokenizer = _tokenizer(transformers)
    pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = transformers.Qwen2Config(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=len(tokenizer),
        pad_token_id=pad,
        num_labels=1,
    )
    torch.manual_seed(seed)
    model = transformers.Qwen2ForSequenceClassification(config)
    path = Path(path)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _tokenizer(transformers):
    tokenizers = require("tokenizers", "train", "the tiny test model")
    bpe = tokenizers.Tokenizer(tokenizers.models.BPE())
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(_CORPUS, trainer)
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
    )
