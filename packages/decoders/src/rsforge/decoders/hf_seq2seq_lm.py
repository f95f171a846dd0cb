"""A Hugging Face encoder-decoder LM (T5 / FlanT5) as an rsforge decoder, laid out as InstructBLIP's and
BLIP-2's FlanT5 variants do: the visual tokens and the embedded prompt form the encoder's input, the
answer is the decoder's.

The prompt is the conversation up to its last user turn, and the target (in training) is the final
assistant turn. With a chat template the prompt is rendered by it, generation prompt included; without
one, a single user turn is its bare text (InstructBLIP's FlanT5 input) and a longer prompt is laid out
`USER: ... ASSISTANT: ... USER: ...` (the built-in role prefixes, with no assistant prefix at the end:
the decoder side is the answer). The encoder text always ends with the tokenizer's eos, as T5 tokenizers
add `</s>`. The visual tokens go before all text, or where the first `<image>` of the prompt is.
The target is the answer's text then eos, whatever the template (T5 has no end-of-turn marker).

Both sides pad on the right: the encoder attends bidirectionally under its mask and the decoder starts
every row at the same decoder start token, so no side needs left padding to decode a batch.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoModelForSeq2SeqLM

from rsforge.core.interfaces import Generation, GenerationOptions, OnTokens
from rsforge.core.sample import Turn
from rsforge.decoders import common
from rsforge.decoders.chat import IGNORE, IMAGE, ROLE_PREFIX
from rsforge.decoders.configs import HFSeq2SeqLMConfig
from rsforge.decoders.generation import hf_generate
from rsforge.decoders.hf_language_model import HFLanguageModel

__all__ = ["HFSeq2SeqLM"]

# T5's relative position buckets have no hard limit; its tokenizers say 512, which T5 was trained on.
DEFAULT_CONTEXT = 512


def split_prompt(conversation: list[Turn]) -> tuple[list[Turn], Turn | None]:
    """The turns up to the last user turn, and the assistant turn after it (None when there is none)."""
    last_user = max((i for i, t in enumerate(conversation) if t.role == "user"), default=None)
    if last_user is None:
        raise ValueError("a conversation for an encoder-decoder LM needs a user turn")
    rest = conversation[last_user + 1 :]
    if len(rest) > 1:
        raise ValueError("only one assistant turn may follow the last user turn")
    return conversation[: last_user + 1], rest[0] if rest else None


def untie_output_embeddings(lm: nn.Module) -> None:
    """Give the output projection its own weights. transformers 5 ties T5's to the input embeddings
    whatever the config says, reading `tie_word_embeddings: false` only as "T5 v1.1: do not rescale the
    decoder output" (`scale_decoder_outputs`); it unties them when a checkpoint (FlanT5's) holds both,
    so a model built from such a config must have both too, to be FlanT5's shape and size."""
    head = lm.get_output_embeddings()
    if head.weight is lm.get_input_embeddings().weight:
        head.weight = nn.Parameter(head.weight.detach().clone())
        lm.all_tied_weights_keys.pop("lm_head.weight", None)  # so no later `tie_weights` ties it again


class HFSeq2SeqLM(HFLanguageModel):
    peft_task = "SEQ_2_SEQ_LM"  # so the exported adapter loads with AutoPeftModelForSeq2SeqLM

    def __init__(self, config: HFSeq2SeqLMConfig) -> None:
        super().__init__(config)
        self.start_id = self.lm.config.decoder_start_token_id

    def _build_lm(self, config: HFSeq2SeqLMConfig) -> nn.Module:
        tok = self.tokenizer

        def word_level(lm_config, options: dict) -> None:  # T5 starts decoding at pad
            common.fit_word_level(lm_config, config, tok, options.get("vocab_size"), eos_token_id=tok.eos_token_id,
                                  pad_token_id=tok.pad_token_id, decoder_start_token_id=tok.pad_token_id)

        lm = common.build_lm(config, AutoModelForSeq2SeqLM, example="'t5'", word_level=word_level)
        if getattr(lm.config, "scale_decoder_outputs", True) is False:
            untie_output_embeddings(lm)
        return lm

    def _context(self, lm: nn.Module) -> int:
        limit = self.tokenizer.model_max_length  # unset: transformers' placeholder 1e30, not a context
        return int(limit) if limit and limit < 1e9 else DEFAULT_CONTEXT

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def encode_prompt(self, prompt: list[Turn]) -> tuple[list[int], int]:
        """The encoder's token ids of a prompt (ending in eos), and the index where the visual tokens go."""
        if self.chat.template is not None:
            encoded = self.chat.encode(prompt, generation_prompt=True)
            return [*encoded.ids, self.eos_id], encoded.slots[0]
        texts = [t.text for t in prompt] if len(prompt) == 1 else \
            [f"{ROLE_PREFIX[t.role]} {t.text}" for t in prompt]
        before, marked, after = " ".join(texts).partition(IMAGE)
        if not marked:  # no placeholder: the visual tokens come first
            before, after = "", before
        head = self._ids(before.strip())
        return [*head, *self._ids(after.replace(IMAGE, "").strip()), self.eos_id], len(head)

    def encoder_inputs(self, visual: torch.Tensor, prompts: list[list[Turn]]) -> dict[str, torch.Tensor]:
        """`inputs_embeds` (visual tokens placed, padded right) and `attention_mask` of the prompts."""
        if visual.shape[0] != len(prompts):
            raise ValueError(f"{visual.shape[0]} visual inputs but {len(prompts)} conversations")
        n_vis = visual.shape[1]
        encoded = [self.encode_prompt(p) for p in prompts]
        width = n_vis + max(len(ids) for ids, _ in encoded)
        if width > self.max_context:
            raise ValueError(f"prompt of {width} tokens ({n_vis} visual) exceeds the encoder context of "
                             f"{self.max_context}")
        embed = self.lm.get_input_embeddings()
        device = visual.device
        rows, masks = [], []
        for i, (ids, at) in enumerate(encoded):
            padded = ids + [self.pad_id] * (width - n_vis - len(ids))
            tokens = embed(torch.tensor(padded, dtype=torch.long, device=device))
            rows.append(torch.cat([tokens[:at], visual[i].to(tokens.dtype), tokens[at:]]))
            masks.append([1] * (n_vis + len(ids)) + [0] * (width - n_vis - len(ids)))
        return {"inputs_embeds": torch.stack(rows), "attention_mask": torch.tensor(masks, device=device)}

    def _split(self, conversations: list[list[Turn]]) -> tuple[list[list[Turn]], list[Turn | None]]:
        pairs = [split_prompt(c) for c in conversations]
        return [p for p, _ in pairs], [a for _, a in pairs]

    def forward(self, visual: torch.Tensor, conversations: list[list[Turn]]) -> torch.Tensor:
        """Mean cross-entropy over each target's tokens and its eos; `transformers` shifts the labels
        right (after the decoder start token) into the decoder's input."""
        prompts, answers = self._split(conversations)
        if any(a is None for a in answers):
            raise ValueError("every training conversation must end with an assistant answer")
        targets = [[*self._ids(a.text), self.eos_id] for a in answers]
        width = max(len(t) for t in targets)
        labels = torch.tensor([t + [IGNORE] * (width - len(t)) for t in targets], device=visual.device)
        return self.lm(**self.encoder_inputs(visual, prompts), labels=labels).loss

    def generate(self, visual: torch.Tensor, conversations: list[list[Turn]], options: GenerationOptions,
                 on_tokens: OnTokens | None = None) -> Generation:
        """Answers through `transformers`' `generate` with the prompts in the encoder (see `Decoder.generate`)."""
        prompts, answers = self._split(conversations)
        if any(a is not None for a in answers):
            raise ValueError("a conversation to answer must end with a user turn")
        return hf_generate(self.lm, self.tokenizer, self.encoder_inputs(visual, prompts), options,
                           stop_ids=self.stop_ids, pad_id=self.pad_id, max_context=self.max_context,
                           on_tokens=on_tokens)

    def continuation_logits(
        self, visual: torch.Tensor, conversations: list[list[Turn]], token_ids: torch.Tensor
    ) -> torch.Tensor:
        """Logits (N, L, V) that predict `token_ids` (N, L) after each prompt, with gradient: the decoder
        reads the start token then `token_ids` but the last. Rows past a sequence's end are don't-care."""
        prompts = [split_prompt(c)[0] for c in conversations]
        start = token_ids.new_full((token_ids.shape[0], 1), self.start_id)
        decoder_ids = torch.cat([start, token_ids[:, :-1]], dim=1)
        return self.lm(**self.encoder_inputs(visual, prompts), decoder_input_ids=decoder_ids).logits
