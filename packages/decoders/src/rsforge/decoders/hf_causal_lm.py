"""A Hugging Face causal LM as an rsforge decoder.

The visual tokens are input embeddings placed where the conversation's first `<image>` is, or
before everything (see `rsforge.decoders.chat` for the layouts). The loss covers assistant tokens
only. Training pads on the right, generation on the left so every row's next token sits at the same
position; decoding is `transformers`' `generate(inputs_embeds=...)` (see `rsforge.decoders.generation`).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoModelForCausalLM

from rsforge.core.interfaces import Generation, GenerationOptions, OnTokens
from rsforge.core.sample import Turn
from rsforge.decoders import common
from rsforge.decoders.chat import IGNORE, Encoded
from rsforge.decoders.configs import HFCausalLMConfig
from rsforge.decoders.generation import hf_generate
from rsforge.decoders.hf_language_model import HFLanguageModel

__all__ = ["IGNORE", "HFCausalLM"]


class HFCausalLM(HFLanguageModel):
    def _build_lm(self, config: HFCausalLMConfig) -> nn.Module:
        tok = self.tokenizer

        def word_level(lm_config, options: dict) -> None:
            common.fit_word_level(lm_config, config, tok, options.get("vocab_size"), bos_token_id=tok.bos_token_id,
                                  eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)

        return common.build_lm(config, AutoModelForCausalLM, example="'llama', 'gpt2', 'qwen2'",
                               word_level=word_level)

    def _context(self, lm: nn.Module) -> int:
        return getattr(lm.config, "max_position_embeddings", 2048)

    def encode_conversation(self, conversation: list[Turn], *, generation_prompt: bool) -> tuple[list[int], list[int]]:
        """Token ids and labels (assistant tokens only) of one conversation, without the visual tokens."""
        encoded = self.chat.encode(conversation, generation_prompt=generation_prompt)
        return encoded.ids, encoded.labels

    def _pack(self, visual: torch.Tensor, conversations: list[list[Turn]], *, generation: bool):
        """Embeddings, attention mask and labels of a batch, padded left (generation) or right."""
        if visual.shape[0] != len(conversations):
            raise ValueError(f"{visual.shape[0]} visual inputs but {len(conversations)} conversations")
        n_vis = visual.shape[1]
        encoded: list[Encoded] = [self.chat.encode(c, generation_prompt=generation) for c in conversations]
        width = n_vis + max(len(e.ids) for e in encoded)
        limit = self.max_context - (1 if generation else 0)
        if width > limit:
            raise ValueError(f"prompt of {width} tokens ({n_vis} visual) exceeds the decoder context of {limit}")
        embed = self.lm.get_input_embeddings()
        device = visual.device
        rows, masks, labels = [], [], []
        for i, enc in enumerate(encoded):
            pad = width - n_vis - len(enc.ids)
            at = enc.slots[0]
            tokens = embed(torch.tensor(enc.ids, dtype=torch.long, device=device))
            pad_embeds = embed(torch.full((pad,), self.pad_id, dtype=torch.long, device=device))
            body = [tokens[:at], visual[i].to(tokens.dtype), tokens[at:]]
            rows.append(torch.cat([pad_embeds, *body] if generation else [*body, pad_embeds]))
            ones = [1] * (n_vis + len(enc.ids))
            masks.append([0] * pad + ones if generation else ones + [0] * pad)
            lab = enc.labels[:at] + [IGNORE] * n_vis + enc.labels[at:]
            labels.append([IGNORE] * pad + lab if generation else lab + [IGNORE] * pad)
        attn = torch.tensor(masks, dtype=torch.long, device=device)
        return torch.stack(rows), attn, torch.tensor(labels, dtype=torch.long, device=device)

    def forward(self, visual: torch.Tensor, conversations: list[list[Turn]]) -> torch.Tensor:
        embeds, attn, labels = self._pack(visual, conversations, generation=False)
        return self.lm(inputs_embeds=embeds, attention_mask=attn, labels=labels).loss

    def generation_inputs(self, visual: torch.Tensor, conversations: list[list[Turn]]) -> dict[str, torch.Tensor]:
        """What `generate` hands to `transformers`' `generate`: `inputs_embeds` (visual tokens placed,
        padded on the left) and `attention_mask` of the prompts."""
        embeds, attn, _ = self._pack(visual, conversations, generation=True)
        return {"inputs_embeds": embeds, "attention_mask": attn}

    def generate(self, visual: torch.Tensor, conversations: list[list[Turn]], options: GenerationOptions,
                 on_tokens: OnTokens | None = None) -> Generation:
        """Answers through `transformers`' `generate` on the packed embeddings (see `Decoder.generate`)."""
        return hf_generate(self.lm, self.tokenizer, self.generation_inputs(visual, conversations), options,
                           stop_ids=self.stop_ids, pad_id=self.pad_id, max_context=self.max_context,
                           on_tokens=on_tokens)

    def continuation_logits(
        self, visual: torch.Tensor, conversations: list[list[Turn]], token_ids: torch.Tensor
    ) -> torch.Tensor:
        """Logits (N, L, V) that predict `token_ids` (N, L) after each prompt, with gradient: SCST's
        policy term and entropy regulariser read them. Rows past a sequence's end are don't-care."""
        prompt = self.generation_inputs(visual, conversations)
        embeds, attn = prompt["inputs_embeds"], prompt["attention_mask"]
        new = self.lm.get_input_embeddings()(token_ids)
        full_attn = torch.cat([attn, attn.new_ones(token_ids.shape)], dim=1)
        positions = (full_attn.cumsum(-1) - 1).clamp(min=0)
        logits = self.lm(inputs_embeds=torch.cat([embeds, new], 1), attention_mask=full_attn,
                         position_ids=positions).logits
        width = embeds.shape[1]
        return logits[:, width - 1 : width - 1 + token_ids.shape[1]]
