"""What a Hugging Face text LM decoder (`hf_causal_lm`, `hf_seq2seq_lm`) does alike when it is built: the
tokenizer, the LM, its stop ids, decoding defaults cleared, freezing or LoRA, the chat format; and its
dtype and adapter export. A subclass says how its LM is built, which peft task it is and its context."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from rsforge.core.interfaces import Decoder
from rsforge.decoders import common
from rsforge.decoders.chat import ChatFormat
from rsforge.decoders.configs import _LanguageModelConfig
from rsforge.decoders.generation import clear_generation_defaults


class HFLanguageModel(Decoder):
    streams = True
    scores_continuations = True
    peft_task: str | None = None  # peft's task type for LoRA (None: peft's default)

    def __init__(self, config: _LanguageModelConfig) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = common.load_tokenizer(config)
        lm = self._build_lm(config)
        self.stop_ids = common.stop_token_ids(lm, self.tokenizer)
        clear_generation_defaults(lm)  # decoding follows GenerationOptions only
        self.lm = common.set_training_mode(lm, config, task_type=self.peft_task)
        # The base weights come back from `pretrained` on reload; only what trains is saved.
        self.weights_from_source = config.pretrained is not None
        self.hidden_size = lm.config.hidden_size
        self.max_context = self._context(lm)
        self.eos_id = self.tokenizer.eos_token_id
        self.pad_id = self.tokenizer.pad_token_id
        self.chat = ChatFormat(self.tokenizer, common.chat_template(config, self.tokenizer))

    def _build_lm(self, config: _LanguageModelConfig) -> nn.Module:
        raise NotImplementedError

    def _context(self, lm: nn.Module) -> int:
        raise NotImplementedError

    @property
    def dtype(self) -> torch.dtype:
        return self.lm.get_input_embeddings().weight.dtype

    def export_adapter(self, directory: str | Path) -> Path:
        """Write the LoRA adapters as a standard peft folder (`adapter_config.json` + safetensors)."""
        return common.export_adapter(self.lm, directory)
