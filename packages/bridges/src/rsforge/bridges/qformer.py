"""Instruction-aware Q-Former (InstructBLIP; BLIP-2's Q-Former plus the instruction as text input).

Learned query tokens and the tokenised instruction share self-attention in every layer; only the query
positions cross-attend to the image tokens (every `cross_attention_frequency`-th layer, from layer 0),
and only the query outputs leave, projected to the decoder's width. The transformer itself is
transformers' `InstructBlipQFormerModel`, so released weights load into it unchanged.

Weight files (`weights`, safetensors; a file or a folder of shards). Two key layouts are read, and only
the tensors of the Q-Former part are loaded from them (a full InstructBLIP file also holds the ViT and LLM):

    this bridge                          Hugging Face (InstructBLIP / BLIP-2)    LAVIS (Qformer.bert = BERT)
    query_tokens                         query_tokens                            query_tokens
    qformer.embeddings.layernorm.*       qformer.embeddings.layernorm.*          Qformer.bert.embeddings.LayerNorm.*
                                         (BLIP-2: qformer.layernorm.*)
    qformer.embeddings.{word,position}_embeddings.*  same                        Qformer.bert.embeddings.{...}.*
    qformer.encoder.layer.N.attention.attention.{query,key,value}.*  same       ...layer.N.attention.self.*
    qformer.encoder.layer.N.crossattention.attention.*              same       ...layer.N.crossattention.self.*
    qformer.encoder.layer.N.{attention,crossattention}.output.*, intermediate(_query).*,
    output(_query).*                     same                                    same under Qformer.bert.
    memory_norm.* (norm_memory)          vision_model.post_layernorm.*           ln_vision.*
    proj.* (load_projection)             language_projection.*                   llm_proj.* / t5_proj.* / opt_proj.*

Skipped on purpose: `Qformer.cls.*` (the language-model head BLIP-2 pre-training used, not part of the
bridge) and `*.position_ids` (a buffer rebuilt here). BLIP-2 was trained without instructions, so its
files have no word/position embeddings and no text feed-forward (`intermediate.*`, `output.*`): loading
one leaves those freshly initialised (they train with the rest); every other tensor must be present.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from rsforge.bridges.configs import QFormerConfig
from rsforge.bridges.weights import read_part
from rsforge.core.errors import weights_misfit
from rsforge.core.interfaces import Bridge, VisualFeatures
from rsforge.core.text import hashed_word_ids

_TEXT_ONLY = re.compile(  # what only the instruction tokens use: absent from BLIP-2 files
    r"qformer\.(embeddings\.(word|position)_embeddings\.|encoder\.layer\.\d+\.(intermediate|output)\.)")
_PROJECTION = ("language_projection.", "llm_proj.", "t5_proj.", "opt_proj.")
_MEMORY_NORM = ("vision_model.post_layernorm.", "ln_vision.")


def _bridge_key(key: str) -> str | None:
    """A weight file's key -> this bridge's key, or None for tensors outside the Q-Former part."""
    if key == "query_tokens":
        return key
    if key.endswith("position_ids") or key.startswith("Qformer.cls."):
        return None
    if key.startswith("Qformer.bert."):  # LAVIS: BERT module names
        key = "qformer." + key.removeprefix("Qformer.bert.")
        key = key.replace(".attention.self.", ".attention.attention.").replace(
            ".crossattention.self.", ".crossattention.attention.")
        return key.replace("qformer.embeddings.LayerNorm.", "qformer.embeddings.layernorm.")
    if key.startswith("qformer."):  # Hugging Face: already this bridge's names, but for BLIP-2's norm
        return key.replace("qformer.layernorm.", "qformer.embeddings.layernorm.", 1)
    for prefix in _PROJECTION:
        if key.startswith(prefix):
            return "proj." + key.removeprefix(prefix)
    for prefix in _MEMORY_NORM:
        if key.startswith(prefix):
            return "memory_norm." + key.removeprefix(prefix)
    return None


class QFormer(Bridge):
    reads_instruction = True

    def __init__(self, config: QFormerConfig) -> None:
        super().__init__()
        from transformers import InstructBlipQFormerConfig, InstructBlipQFormerModel

        if config.in_dim is None:
            raise ValueError("qformer: in_dim is not set (the assembler fills it from the upstream part)")
        if config.max_instruction_tokens > config.max_position_embeddings:
            raise ValueError(f"qformer: max_instruction_tokens={config.max_instruction_tokens} exceeds "
                             f"max_position_embeddings={config.max_position_embeddings}")
        self.config = config
        self.in_dim, self.out_dim = config.in_dim, config.out_dim or config.hidden_size
        self.qformer = InstructBlipQFormerModel(InstructBlipQFormerConfig(
            vocab_size=config.vocab_size, hidden_size=config.hidden_size, num_hidden_layers=config.num_layers,
            num_attention_heads=config.num_heads, intermediate_size=config.intermediate_size,
            hidden_dropout_prob=config.dropout, attention_probs_dropout_prob=config.dropout,
            max_position_embeddings=config.max_position_embeddings, pad_token_id=0,
            cross_attention_frequency=config.cross_attention_frequency, encoder_hidden_size=config.in_dim,
        ))
        # BLIP-2 / InstructBLIP initialise the queries N(0, 0.02), like BERT's weights.
        self.query_tokens = nn.Parameter(torch.randn(1, config.num_queries, config.hidden_size) * 0.02)
        self.memory_norm = nn.LayerNorm(config.in_dim) if config.norm_memory else nn.Identity()
        self.proj = nn.Linear(config.hidden_size, self.out_dim)
        self.reads_instruction = config.instruction_aware
        self.instruction = config.instruction
        if not config.instruction_aware:  # a trainable parameter without a gradient would stall DDP
            for name, param in self.named_parameters():
                if _TEXT_ONLY.match(name):
                    param.requires_grad_(False)
        self.tokenizer = None
        # On the meta device (shape checks of full-size recipes) nothing is read from disk or the hub.
        if torch.empty(()).device.type != "meta":
            if config.tokenizer is not None:
                self.tokenizer = self._load_tokenizer(config)
            if config.weights is not None:
                self.load_weights(config.weights)

    @staticmethod
    def _load_tokenizer(config: QFormerConfig):
        from transformers import AutoTokenizer

        # Left truncation as in InstructBLIP (LAVIS): a long instruction keeps its end, where the question is.
        tokenizer = AutoTokenizer.from_pretrained(config.tokenizer, truncation_side="left")
        if len(tokenizer) > config.vocab_size:
            raise ValueError(f"qformer: tokenizer {config.tokenizer!r} has {len(tokenizer)} tokens, more than "
                             f"vocab_size={config.vocab_size}")
        return tokenizer

    def tokenize(self, instructions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """instructions -> (ids, attention_mask), each (B, L)."""
        if self.tokenizer is None:
            return hashed_word_ids(instructions, self.config.vocab_size, self.config.max_instruction_tokens)
        enc = self.tokenizer(instructions, padding="longest", truncation=True,
                             max_length=self.config.max_instruction_tokens, return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"]

    def forward(self, features: VisualFeatures, instructions: list[str] | None = None) -> VisualFeatures:
        tokens = features.tokens
        if tokens.dim() != 4 or tokens.shape[-1] != self.in_dim:
            raise ValueError(f"qformer expects tokens (B, T, N, {self.in_dim}), got {tuple(tokens.shape)}")
        batch = tokens.shape[0]
        instructions = instructions if instructions is not None else [""] * batch
        if self.config.instruction_aware and len(instructions) != batch:
            raise ValueError(f"qformer got {len(instructions)} instructions for a batch of {batch}")
        memory = self.memory_norm(tokens.flatten(1, 2))  # every image of the sample is one memory
        queries = self.query_tokens.expand(batch, -1, -1)
        if self.config.instruction_aware:
            ids, mask = (t.to(tokens.device) for t in self.tokenize(instructions))
            attention = torch.cat([mask.new_ones(queries.shape[:2]), mask], dim=1)
        else:
            ids, attention = None, torch.ones(queries.shape[:2], dtype=torch.long, device=tokens.device)
        hidden = self.qformer(input_ids=ids, attention_mask=attention, query_embeds=queries,
                              encoder_hidden_states=memory).last_hidden_state
        out = self.proj(hidden[:, : queries.shape[1]])  # query positions only; the text stays inside
        return VisualFeatures(tokens=out.unsqueeze(1), maps=features.maps)

    def load_weights(self, path: str | Path) -> None:
        """Load a released Q-Former (HF or LAVIS key layout, see the module docstring) from safetensors;
        errors name every missing, unexpected and mis-shaped tensor."""
        own = self.state_dict()
        wanted = ("query_tokens", "qformer.") + (("proj.",) if self.config.load_projection else ()) + (
            ("memory_norm.",) if self.config.norm_memory else ())

        def rename(key: str) -> str | None:  # None: outside the Q-Former part (ViT, LLM, ...)
            name = _bridge_key(key)
            return name if name is not None and name.startswith(wanted) else None

        loaded, unexpected, mismatched = read_part(path, own, rename, what="qformer")
        text_free = "qformer.embeddings.word_embeddings.weight" not in loaded  # a BLIP-2 file
        missing = [k for k in own if k.startswith(wanted) and k not in loaded
                   and not (text_free and _TEXT_ONLY.match(k))]
        hint = " (a file without projection: set load_projection: false)" if any(
            k.startswith("proj.") for k in missing) else ""
        misfit = weights_misfit(missing, unexpected, mismatched, missing_hint=hint)
        if misfit:
            raise ValueError(f"qformer weights {path} do not fit this Q-Former - {misfit}")
        self.load_state_dict(loaded, strict=False)
