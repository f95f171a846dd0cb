"""Hugging Face InstructBLIP and BLIP-2 folders (`Salesforce/instructblip-vicuna-7b`, `-flan-t5-xl`,
`Salesforce/blip2-opt-2.7b`, `blip2-flan-t5-xl`, ...) as rsforge parts.

The folder is checked key by key against transformers' own `InstructBlipForConditionalGeneration` /
`Blip2ForConditionalGeneration` built from its `config.json`, then split the way rsforge composes it:

    vision_model.*                       -> vision_model/      an `hf_vision` tower (EVA-ViT-g as released)
    query_tokens, qformer.*, language_projection.* -> qformer.safetensors   the `qformer` bridge's weights
    language_model.*                     -> language_model/    the LM (`hf_causal_lm` or `hf_seq2seq_lm`)
    tokenizer files, qformer_tokenizer/  -> language_model/, qformer_tokenizer/
    preprocessor_config.json             -> vision_model/ and the encoder's image_size / interpolation

The recipe reproduces the original's wiring: the Q-Former reads all 257 tokens (class token kept) of the
vision tower's last layer after its `post_layernorm` (so the bridge adds no norm of its own); InstructBLIP
feeds the prompt to the Q-Former, BLIP-2 does not; the LM reads the query outputs first, then the prompt
(with the tokenizer's BOS for a causal LM, `</s>` after it for T5), as the released processors build it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from rsforge.convert.checkpoint import Checkpoint, ConversionError, check_keys, expected_state, write_weights

# The causal LM reads [query outputs] BOS prompt, and learns answer + EOS right after it, with no separator.
PROMPT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}{{ m['content'] }}"
                   "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}{% endfor %}")
RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "spiece.model", "vocab.json",
                   "merges.txt", "vocab.txt", "special_tokens_map.json", "added_tokens.json")
_FORMATS = {"hf-instructblip": "instructblip", "hf-blip2": "blip-2"}


def _reference_class(model_type: str):
    from transformers import Blip2ForConditionalGeneration, InstructBlipForConditionalGeneration

    return {"instructblip": InstructBlipForConditionalGeneration, "blip-2": Blip2ForConditionalGeneration}[model_type]


def read_config(src: Path, fmt: str):
    from transformers import AutoConfig

    if not (src / "config.json").is_file():
        raise ConversionError(f"{src / 'config.json'}: missing; {fmt} is a Hugging Face model folder")
    config = AutoConfig.from_pretrained(src)
    if config.model_type != _FORMATS[fmt]:
        raise ConversionError(f"{src / 'config.json'}: model_type is {config.model_type!r}, but --from {fmt} "
                              f"reads {_FORMATS[fmt]!r} folders")
    return config


def preprocessing(src: Path, size_fallback: int) -> dict[str, Any]:
    """The encoder options that keep the released image processor's resize and normalisation."""
    path = src / "preprocessor_config.json"
    if not path.is_file():
        raise ConversionError(f"{path}: missing; the converted encoder must normalise images as the original "
                              "(image_mean, image_std, size, resample)")
    values = json.loads(path.read_text())
    size = values.get("size", size_fallback)
    side = size.get("height", size.get("shortest_edge")) if isinstance(size, dict) else size
    options = {"image_size": int(side), "mean": values["image_mean"], "std": values["image_std"]}
    if values.get("resample") in RESAMPLE:
        options["interpolation"] = RESAMPLE[values["resample"]]
    return options


def _copy_tokenizer(src: Path, out: Path, what: str) -> None:
    files = [f for f in TOKENIZER_FILES if (src / f).is_file()]
    if not files:
        raise ConversionError(f"{src}: no tokenizer files ({', '.join(TOKENIZER_FILES[:3])}, ...) for the {what}")
    out.mkdir(parents=True, exist_ok=True)
    for name in files:
        (out / name).write_bytes((src / name).read_bytes())


def _dtype_name(config) -> str:
    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    name = str(dtype).removeprefix("torch.") if dtype is not None else "float32"
    return name if name in ("float32", "bfloat16", "float16") else "float32"


def _save_config(config, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(str(directory))


def convert(src: Path, out: Path, fmt: str) -> dict[str, Any]:
    """Write the parts of the HF folder `src` into `out`; returns the recipe (a dict) that composes them."""
    config = read_config(src, fmt)
    pixels = preprocessing(src, config.vision_config.image_size)
    checkpoint = Checkpoint(src)
    reference = _reference_class(config.model_type)
    with torch.device("meta"):
        shapes, tied = expected_state(reference(config))
    keys = [k for k in checkpoint.keys() if not k.endswith("position_ids")]  # buffers older files carry
    check_keys(src, {k: k for k in keys}, checkpoint.shape, shapes, tied,
               what=f"transformers' {reference.__name__} of {src / 'config.json'}")

    def part(prefix: str, strip: bool) -> list[tuple[str, Any]]:
        return [(k.removeprefix(prefix) if strip else k, lambda k=k: checkpoint.get(k))
                for k in keys if k.startswith(prefix)]

    _save_config(config.vision_config, out / "vision_model")
    write_weights(out / "vision_model", part("vision_model.", strip=True))
    (out / "vision_model" / "preprocessor_config.json").write_bytes((src / "preprocessor_config.json").read_bytes())
    write_weights(out, part("query_tokens", False) + part("qformer.", False) + part("language_projection.", False),
                  name="qformer", shard=False)
    _save_config(config.text_config, out / "language_model")
    write_weights(out / "language_model", part("language_model.", strip=True))
    _copy_tokenizer(src, out / "language_model", "language model")

    instruct = config.model_type == "instructblip"
    if instruct:
        if not (src / "qformer_tokenizer").is_dir():
            raise ConversionError(f"{src / 'qformer_tokenizer'}: missing; InstructBLIP tokenizes the prompt for its "
                                  "Q-Former with this BERT tokenizer (released beside the model)")
        _copy_tokenizer(src / "qformer_tokenizer", out / "qformer_tokenizer", "Q-Former")
    return recipe(config, pixels, instruct, _dtype_name(config))


def recipe(config, pixels: dict[str, Any], instruct: bool, dtype: str) -> dict[str, Any]:
    q = config.qformer_config
    seq2seq = bool(getattr(config.text_config, "is_encoder_decoder", False))
    bridge = {
        "name": "qformer", "num_queries": config.num_query_tokens, "hidden_size": q.hidden_size,
        "num_layers": q.num_hidden_layers, "num_heads": q.num_attention_heads,
        "intermediate_size": q.intermediate_size, "cross_attention_frequency": q.cross_attention_frequency,
        "vocab_size": q.vocab_size, "max_position_embeddings": q.max_position_embeddings,
        "max_instruction_tokens": min(128, q.max_position_embeddings),  # LAVIS's max_txt_len
        "dropout": q.hidden_dropout_prob, "norm_memory": False, "instruction_aware": instruct,
        "weights": "${recipe_dir}/qformer.safetensors",
    }
    if instruct:
        bridge["tokenizer"] = "${recipe_dir}/qformer_tokenizer"
    decoder = {"name": "hf_seq2seq_lm" if seq2seq else "hf_causal_lm", "pretrained": "${recipe_dir}/language_model",
               "freeze": True, "dtype": dtype}
    if not seq2seq:
        decoder["chat_template"] = PROMPT_TEMPLATE
    encoder = {"name": "hf_vision", "pretrained": "${recipe_dir}/vision_model", "keep_prefix_tokens": True,
               "freeze": True, **pixels}
    return {"encoder": encoder, "bridges": [bridge], "decoder": decoder}
