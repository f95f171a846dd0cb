"""A Hugging Face causal LM as an rsforge decoder.

Sequence layout (one sample): [visual tokens] <s> USER: text ASSISTANT: answer </s> USER: ... The
loss covers every assistant answer and its </s>, nothing else. Training pads on the right,
generation on the left so every row's next token sits at the same position.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from rsforge.core.data.schema import Turn
from rsforge.core.features import Decoder
from rsforge.decoders.configs import WORD_LEVEL, HFCausalLMConfig
from rsforge.decoders.word_level import SPECIALS, TEMPLATE_WORDS, build_tokenizer

IGNORE = -100
ROLE_PREFIX = {"user": "USER:", "assistant": "ASSISTANT:"}


def _top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    # Keep the smallest prefix whose mass reaches top_p (the first token always stays).
    drop = sorted_probs.cumsum(-1) - sorted_probs > top_p
    sorted_probs = sorted_probs.masked_fill(drop, 0.0)
    return torch.zeros_like(probs).scatter(-1, order, sorted_probs)


class HFCausalLM(Decoder):
    def __init__(self, config: HFCausalLMConfig) -> None:
        super().__init__()
        self.config = config
        if config.tokenizer == WORD_LEVEL:
            self.tokenizer = build_tokenizer(config.vocab or SPECIALS + TEMPLATE_WORDS)
        else:
            self.tokenizer = AutoTokenizer.from_pretrained(config.tokenizer or config.pretrained)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.lm = self._build_lm(config)
        if config.freeze:
            self.lm.requires_grad_(False)
        self.hidden_size = self.lm.config.hidden_size
        self.max_context = getattr(self.lm.config, "max_position_embeddings", 2048)
        self.eos_id = self.tokenizer.eos_token_id
        self.pad_id = self.tokenizer.pad_token_id
        self._role_ids = {role: self._ids(prefix) for role, prefix in ROLE_PREFIX.items()}

    def _build_lm(self, config: HFCausalLMConfig) -> nn.Module:
        on_meta = torch.get_default_device().type == "meta"
        if config.pretrained is not None and not on_meta:
            return AutoModelForCausalLM.from_pretrained(config.pretrained)
        if config.pretrained is not None:  # shape check only: no weights are read
            lm_config = AutoConfig.from_pretrained(config.pretrained)
        else:
            options = dict(config.config)
            model_type = options.pop("model_type", None)
            if model_type is None:
                raise ValueError("decoder.config.model_type: missing (e.g. 'llama', 'gpt2', 'qwen2')")
            lm_config = AutoConfig.for_model(model_type, **options)
        if config.tokenizer == WORD_LEVEL:
            lm_config.vocab_size = len(self.tokenizer)
            lm_config.bos_token_id = self.tokenizer.bos_token_id
            lm_config.eos_token_id = self.tokenizer.eos_token_id
            lm_config.pad_token_id = self.tokenizer.pad_token_id
        return AutoModelForCausalLM.from_config(lm_config)

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def encode_conversation(self, conversation: list[Turn], *, generation_prompt: bool) -> tuple[list[int], list[int]]:
        """Token ids and labels (answers only) of one conversation."""
        ids: list[int] = [] if self.tokenizer.bos_token_id is None else [self.tokenizer.bos_token_id]
        labels = [IGNORE] * len(ids)
        for turn in conversation:
            prefix = self._role_ids[turn.role]
            text = self._ids(turn.text)
            ids += prefix + text
            if turn.role == "assistant":
                ids.append(self.eos_id)
                labels += [IGNORE] * len(prefix) + text + [self.eos_id]
            else:
                labels += [IGNORE] * (len(prefix) + len(text))
        if generation_prompt:
            ids += self._role_ids["assistant"]
            labels += [IGNORE] * len(self._role_ids["assistant"])
        return ids, labels

    def _pack(self, visual: torch.Tensor, conversations: list[list[Turn]], *, generation: bool):
        """Embeddings, attention mask and labels of a batch, padded left (generation) or right."""
        if visual.shape[0] != len(conversations):
            raise ValueError(f"{visual.shape[0]} visual inputs but {len(conversations)} conversations")
        n_vis = visual.shape[1]
        encoded = [self.encode_conversation(c, generation_prompt=generation) for c in conversations]
        width = n_vis + max(len(ids) for ids, _ in encoded)
        limit = self.max_context - (1 if generation else 0)
        if width > limit:
            raise ValueError(f"prompt of {width} tokens ({n_vis} visual) exceeds the decoder context of {limit}")
        embed = self.lm.get_input_embeddings()
        device = visual.device
        rows, masks, labels = [], [], []
        for i, (ids, lab) in enumerate(encoded):
            pad = width - n_vis - len(ids)
            ids_t = torch.tensor(ids, dtype=torch.long, device=device)
            pad_t = torch.full((pad,), self.pad_id, dtype=torch.long, device=device)
            tokens = embed(torch.cat([pad_t, ids_t]) if generation else torch.cat([ids_t, pad_t]))
            vis = visual[i].to(tokens.dtype)
            body = [tokens[:pad], vis, tokens[pad:]] if generation else [vis, tokens]
            rows.append(torch.cat(body))
            ones = [1] * (n_vis + len(ids))
            masks.append([0] * pad + ones if generation else ones + [0] * pad)
            labels.append([IGNORE] * n_vis + lab + [IGNORE] * pad)
        attn = torch.tensor(masks, dtype=torch.long, device=device)
        return torch.stack(rows), attn, torch.tensor(labels, dtype=torch.long, device=device)

    def forward(self, visual: torch.Tensor, conversations: list[list[Turn]]) -> torch.Tensor:
        embeds, attn, labels = self._pack(visual, conversations, generation=False)
        return self.lm(inputs_embeds=embeds, attention_mask=attn, labels=labels).loss

    @torch.no_grad()
    def generate(
        self,
        visual: torch.Tensor,
        conversations: list[list[Turn]],
        *,
        max_new_tokens: int = 32,
        temperature: float = 0.0,
        top_p: float = 1.0,
    ) -> list[str]:
        embeds, attn, _ = self._pack(visual, conversations, generation=True)
        max_new_tokens = min(max_new_tokens, self.max_context - embeds.shape[1])
        positions = (attn.cumsum(-1) - 1).clamp(min=0)
        out = self.lm(inputs_embeds=embeds, attention_mask=attn, position_ids=positions, use_cache=True)
        batch = embeds.shape[0]
        done = torch.zeros(batch, dtype=torch.bool, device=embeds.device)
        generated: list[torch.Tensor] = []
        for _ in range(max_new_tokens):
            logits = out.logits[:, -1].float()
            if temperature > 0:
                probs = _top_p_filter((logits / temperature).softmax(-1), top_p)
                token = torch.multinomial(probs, 1).squeeze(1)
            else:
                token = logits.argmax(-1)
            token = token.masked_fill(done, self.pad_id)
            generated.append(token)
            done |= token == self.eos_id
            if bool(done.all()):
                break
            attn = torch.cat([attn, attn.new_ones(batch, 1)], dim=1)
            positions = positions[:, -1:] + 1
            out = self.lm(input_ids=token[:, None], attention_mask=attn, position_ids=positions,
                          past_key_values=out.past_key_values, use_cache=True)
        if not generated:
            return [""] * batch
        ids = torch.stack(generated, dim=1).tolist()
        texts = []
        for row in ids:
            if self.eos_id in row:
                row = row[: row.index(self.eos_id)]
            texts.append(self.tokenizer.decode(row, skip_special_tokens=True).strip())
        return texts
