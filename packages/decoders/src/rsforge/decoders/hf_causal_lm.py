"""A Hugging Face causal LM as an rsforge decoder.

The visual tokens are input embeddings placed where the conversation's first `<image>` is, or
before everything (see `rsforge.decoders.chat` for the layouts). The loss covers assistant tokens
only. Training pads on the right, generation on the left so every row's next token sits at the same
position. Greedy and sampled decoding run rsforge's own KV-cache loop on `inputs_embeds`; beam
search goes through `transformers`' `generate(inputs_embeds=...)`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, StoppingCriteriaList

from rsforge.core.data.schema import Turn
from rsforge.core.features import Decoder
from rsforge.decoders import common
from rsforge.decoders.chat import IGNORE, ChatFormat, Encoded
from rsforge.decoders.configs import WORD_LEVEL, HFCausalLMConfig
from rsforge.decoders.generation import Generation, OnTokens, StopStrings, check_sampling, finish_texts, pick

__all__ = ["IGNORE", "HFCausalLM"]


class HFCausalLM(Decoder):
    def __init__(self, config: HFCausalLMConfig) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = common.load_tokenizer(config)
        lm = self._build_lm(config)
        self.lm = common.set_training_mode(lm, config)
        # The base weights come back from `pretrained` on reload; only what trains is saved.
        self.weights_from_source = config.pretrained is not None
        self.hidden_size = lm.config.hidden_size
        self.max_context = getattr(lm.config, "max_position_embeddings", 2048)
        self.eos_id = self.tokenizer.eos_token_id
        self.pad_id = self.tokenizer.pad_token_id
        self.stop_ids = common.stop_token_ids(lm, self.tokenizer)
        self.chat = ChatFormat(self.tokenizer, common.chat_template(config, self.tokenizer))

    def _build_lm(self, config: HFCausalLMConfig) -> nn.Module:
        dtype = common.DTYPES[config.dtype]
        on_meta = torch.get_default_device().type == "meta"
        if config.pretrained is not None and not on_meta:
            return AutoModelForCausalLM.from_pretrained(config.pretrained, **common.pretrained_kwargs(config))
        if config.pretrained is not None:  # shape check only: no weights are read
            lm_config = AutoConfig.from_pretrained(config.pretrained)
        else:
            options = dict(config.config)
            model_type = options.pop("model_type", None)
            if model_type is None:
                raise ValueError("decoder.config.model_type: missing (e.g. 'llama', 'gpt2', 'qwen2')")
            requested_vocab = options.pop("vocab_size", None)
            lm_config = AutoConfig.for_model(model_type, **options)
            if config.tokenizer == WORD_LEVEL:
                lm_config.vocab_size = common.word_vocab_size(config, self.tokenizer, requested_vocab)
                lm_config.bos_token_id = self.tokenizer.bos_token_id
                lm_config.eos_token_id = self.tokenizer.eos_token_id
                lm_config.pad_token_id = self.tokenizer.pad_token_id
            elif requested_vocab is not None:
                lm_config.vocab_size = requested_vocab
        return AutoModelForCausalLM.from_config(lm_config, dtype=dtype)

    @property
    def dtype(self) -> torch.dtype:
        return self.lm.get_input_embeddings().weight.dtype

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

    @torch.no_grad()
    def generate(
        self,
        visual: torch.Tensor,
        conversations: list[list[Turn]],
        *,
        max_new_tokens: int = 32,
        temperature: float = 0.0,
        top_p: float = 1.0,
        num_beams: int = 1,
        num_return_sequences: int = 1,
        stop: list[str] | None = None,
        return_details: bool = False,
        on_tokens: OnTokens | None = None,
    ) -> list[str] | Generation:
        """Answers, `num_return_sequences` per input (input-major). Greedy at temperature 0, else
        multinomial sampling with temperature and top-p; `num_beams > 1`: beam search. A row ends at
        a stop token or when its text contains one of `stop` (the text is cut there).
        `return_details=True` returns a `Generation` with the token ids and their log-probs.
        `on_tokens` streams greedy and sampled decoding (see `generation.OnTokens`)."""
        check_sampling(temperature, top_p, num_beams, num_return_sequences)
        if on_tokens is not None and num_beams > 1:
            raise ValueError("on_tokens streams greedy and sampled decoding, not beam search")
        stop = list(stop or [])
        embeds, attn, _ = self._pack(visual, conversations, generation=True)
        max_new_tokens = min(max_new_tokens, self.max_context - embeds.shape[1])
        if num_beams > 1:
            if return_details:
                raise ValueError("return_details is for greedy and sampled decoding, not beam search")
            return self._beam_search(embeds, attn, max_new_tokens, num_beams, num_return_sequences, stop)
        if num_return_sequences > 1:  # each input's K rollouts are consecutive rows
            embeds = embeds.repeat_interleave(num_return_sequences, 0)
            attn = attn.repeat_interleave(num_return_sequences, 0)
        ids, mask, logprobs = self._decode_loop(embeds, attn, max_new_tokens, temperature, top_p, stop, on_tokens)
        texts = finish_texts(self.tokenizer, ids.tolist(), self.stop_ids, stop)
        if not return_details:
            return texts
        return Generation(texts=texts, token_ids=ids, mask=mask, logprobs=logprobs)

    def _decode_loop(self, embeds, attn, max_new_tokens: int, temperature: float, top_p: float, stop: list[str],
                     on_tokens: OnTokens | None = None):
        """rsforge's KV-cache loop: (N, L) token ids (pad after each row's end), the mask of the tokens
        that count (through the stop token) and their log-probs. `on_tokens` sees every step's tokens
        and may end rows early."""
        positions = (attn.cumsum(-1) - 1).clamp(min=0)
        batch, device = embeds.shape[0], embeds.device
        stop_ids = torch.tensor(self.stop_ids, device=device)
        done = torch.zeros(batch, dtype=torch.bool, device=device)
        tokens, alive, logprobs = [], [], []
        out = self.lm(inputs_embeds=embeds, attention_mask=attn, position_ids=positions, use_cache=True)
        for _ in range(max_new_tokens):
            token, logprob = pick(out.logits[:, -1].float(), temperature, top_p)
            tokens.append(token.masked_fill(done, self.pad_id))
            alive.append(~done)
            logprobs.append(logprob.masked_fill(done, 0.0))
            done |= torch.isin(token, stop_ids)
            if stop:
                texts = self.tokenizer.batch_decode(torch.stack(tokens, 1), skip_special_tokens=True)
                done |= torch.tensor([any(s in t for s in stop) for t in texts], device=device)
            if on_tokens is not None:
                ended = on_tokens(tokens[-1], alive[-1])
                if ended is not None:
                    done |= ended.to(device)
            if bool(done.all()):
                break
            attn = torch.cat([attn, attn.new_ones(batch, 1)], dim=1)
            positions = positions[:, -1:] + 1
            out = self.lm(input_ids=tokens[-1][:, None], attention_mask=attn, position_ids=positions,
                          past_key_values=out.past_key_values, use_cache=True)
        if not tokens:
            empty = torch.empty(batch, 0, device=device)
            return empty.long(), empty.bool(), empty
        return torch.stack(tokens, 1), torch.stack(alive, 1), torch.stack(logprobs, 1)

    def _beam_search(self, embeds, attn, max_new_tokens: int, num_beams: int, num_return: int, stop: list[str]):
        criteria = StoppingCriteriaList([StopStrings(self.tokenizer, stop, 0)]) if stop else None
        out = self.lm.generate(
            inputs_embeds=embeds, attention_mask=attn, max_new_tokens=max_new_tokens, num_beams=num_beams,
            num_return_sequences=num_return, do_sample=False, eos_token_id=self.stop_ids, pad_token_id=self.pad_id,
            stopping_criteria=criteria,
        )
        return finish_texts(self.tokenizer, out.tolist(), self.stop_ids, stop)

    def continuation_logits(
        self, visual: torch.Tensor, conversations: list[list[Turn]], token_ids: torch.Tensor
    ) -> torch.Tensor:
        """Logits (N, L, V) that predict `token_ids` (N, L) after each prompt, with gradient: SCST's
        policy term and entropy regulariser read them. Rows past a sequence's end are don't-care."""
        embeds, attn, _ = self._pack(visual, conversations, generation=True)
        new = self.lm.get_input_embeddings()(token_ids)
        full_attn = torch.cat([attn, attn.new_ones(token_ids.shape)], dim=1)
        positions = (full_attn.cumsum(-1) - 1).clamp(min=0)
        logits = self.lm(inputs_embeds=torch.cat([embeds, new], 1), attention_mask=full_attn,
                         position_ids=positions).logits
        prompt = embeds.shape[1]
        return logits[:, prompt - 1 : prompt - 1 + token_ids.shape[1]]

    def export_adapter(self, directory: str | Path) -> Path:
        """Write the LoRA adapters as a standard peft folder (loadable with `PeftModel.from_pretrained`)."""
        return common.export_adapter(self.lm, directory)
