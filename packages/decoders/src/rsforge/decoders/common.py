"""What the Hugging Face decoders share: tokenizer and template, dtype, freezing / LoRA, adapters."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoTokenizer

from rsforge.decoders.configs import DEFAULT_TEMPLATE, WORD_LEVEL, _LanguageModelConfig
from rsforge.decoders.word_level import SPECIALS, TEMPLATE_WORDS, build_tokenizer

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_tokenizer(config: _LanguageModelConfig, extra_specials: list[str] | None = None):
    if config.tokenizer == WORD_LEVEL:
        tokenizer = build_tokenizer(config.vocab or SPECIALS + TEMPLATE_WORDS)
    else:
        tokenizer = AutoTokenizer.from_pretrained(config.tokenizer or config.pretrained)
    missing = [t for t in extra_specials or [] if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing})
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def chat_template(config: _LanguageModelConfig, tokenizer) -> str | None:
    """The template to render with, or None for the built-in layout."""
    if config.chat_template == DEFAULT_TEMPLATE:
        return None
    return config.chat_template or getattr(tokenizer, "chat_template", None) or None


def word_vocab_size(config: _LanguageModelConfig, tokenizer, requested: int | None) -> int:
    """A word-level tokenizer's vocabulary, or the config's larger `vocab_size` (rows beyond the
    word list stay unused, so a full-size config keeps its real parameter count)."""
    if requested is None:
        return len(tokenizer)
    if requested < len(tokenizer):
        raise ValueError(
            f"decoder.config.vocab_size={requested} is smaller than the word-level vocabulary ({len(tokenizer)} words)"
        )
    return requested


def build_lm(config: _LanguageModelConfig, auto_model, *, example: str,
             word_level: Callable[[Any, dict], None]) -> nn.Module:
    """The model from `pretrained` (weights), or from its config alone on the meta device (shapes only), or
    randomly initialised from `config`; with a word-level tokenizer, `word_level(model config, options)` fits
    the vocabulary size and special ids to it."""
    on_meta = torch.get_default_device().type == "meta"
    if config.pretrained is not None and not on_meta:
        return auto_model.from_pretrained(config.pretrained, **pretrained_kwargs(config))
    if config.pretrained is not None:  # shape check only: no weights are read
        model_config = AutoConfig.from_pretrained(config.pretrained)
    else:
        options = dict(config.config)
        model_type = options.pop("model_type", None)
        if model_type is None:
            raise ValueError(f"decoder.config.model_type: missing (e.g. {example})")
        model_config = AutoConfig.for_model(model_type, **options)
        if config.tokenizer == WORD_LEVEL:
            word_level(model_config, options)
    return auto_model.from_config(model_config, dtype=DTYPES[config.dtype])


def fit_word_level(model_config, config: _LanguageModelConfig, tokenizer, requested_vocab: int | None,
                   **ids: int) -> None:
    """A word-level tokenizer's vocabulary size (see `word_vocab_size`) and special ids on `model_config`."""
    model_config.vocab_size = word_vocab_size(config, tokenizer, requested_vocab)
    for name, value in ids.items():
        setattr(model_config, name, value)


def pretrained_kwargs(config: _LanguageModelConfig) -> dict:
    kwargs: dict = {"dtype": DTYPES[config.dtype]}
    if config.device_map is not None:
        kwargs["device_map"] = config.device_map
    return kwargs


def set_training_mode(model: nn.Module, config: _LanguageModelConfig, task_type: str | None = None) -> nn.Module:
    """Freeze, or wrap in LoRA adapters (base frozen), as the config says. `task_type` (peft's, e.g.
    'SEQ_2_SEQ_LM') goes into the exported adapter's config, so `AutoPeftModel*` classes can load it."""
    if config.lora is not None:
        from peft import LoraConfig, get_peft_model

        lora = config.lora
        with warnings.catch_warnings():
            # peft reads transformers' deprecated `is_gradient_checkpointing` property: a warning for peft's
            # authors that would otherwise print on every model build.
            warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated",
                                    category=FutureWarning)
            return get_peft_model(model, LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                                    target_modules=lora.target_modules, task_type=task_type))
    if config.freeze:
        model.requires_grad_(False)
    return model


def export_adapter(model: nn.Module, directory: str | Path) -> Path:
    """Write a standard peft adapter folder (`adapter_config.json` + `adapter_model.safetensors`)."""
    if not hasattr(model, "peft_config"):
        raise ValueError("this decoder has no LoRA adapters to export; set decoder.lora in the recipe")
    directory = Path(directory)
    model.save_pretrained(str(directory), safe_serialization=True)
    return directory


def stop_token_ids(model: nn.Module, tokenizer) -> list[int]:
    """Ids that end an answer: the tokenizer's eos and the model's own (an end-of-turn token, say)."""
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    return sorted(i for i in ids if i is not None and i < len(tokenizer))
