"""Decoding through `transformers`' `generate`, for every Hugging Face decoder: sampling, beams, K
rollouts, stop strings, per-token log-probs and token streaming (`OnTokens`) in one place.

Greedy and sampled decoding end rows one by one through `RowEnds` (stop tokens, stop strings, a
streaming caller), which also counts each row's tokens and keeps each token's log-probability as it
is drawn: `StepLogprobs`, the last logits processor, sees the scores the token is drawn from, so no
`output_scores` history (steps x rows x vocab floats) is kept. Beam search reorders its rows every
step, so it ends candidates with the stateless `StopStrings` and scores them afterwards with
`compute_transition_scores`.
"""

from __future__ import annotations

import warnings

import torch
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

from rsforge.core.interfaces import Generation, GenerationOptions, OnTokens

TOKEN_FIELDS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")


def cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """The text up to the earliest stop string, and whether one occurred."""
    cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


def clear_generation_defaults(model) -> None:
    """Give `model` a generation config that holds only its special token ids.

    `generate` fills every field a call leaves unset from `model.generation_config`, so a checkpoint's
    `generation_config.json` (sampling on, top-k 20, a repetition penalty, suppressed tokens) would
    otherwise change what `GenerationOptions` ask for. Read the stop ids before (they are kept anyway)."""
    old = model.generation_config
    model.generation_config = GenerationConfig(
        **{name: getattr(old, name) for name in TOKEN_FIELDS if getattr(old, name, None) is not None})


def generation_config(options: GenerationOptions, max_new_tokens: int, stop_ids: list[int], pad_id: int
                      ) -> GenerationConfig:
    """The config `hf_generate` passes: decoding mode, lengths and special ids, top-k off, the penalties
    `options` ask for and none that a checkpoint sets (`clear_generation_defaults` keeps out the rest).
    Temperature and top-p are not here: `sampling_processors` applies them, so that `StepLogprobs` runs
    after them."""
    beams = options.num_beams > 1
    mode = {"do_sample": True, "temperature": 1.0, "top_p": 1.0, "top_k": 0} if options.temperature > 0 else \
        {"do_sample": False}
    return GenerationConfig(
        max_new_tokens=max_new_tokens, num_beams=options.num_beams, num_return_sequences=options.num_return_sequences,
        eos_token_id=list(stop_ids), pad_token_id=pad_id, use_cache=True, repetition_penalty=options.repetition_penalty,
        no_repeat_ngram_size=0, length_penalty=options.length_penalty if beams else 1.0, early_stopping=False,
        return_dict_in_generate=beams,
        output_scores=beams, **mode)


def sampling_processors(options: GenerationOptions) -> list[LogitsProcessor]:
    """Temperature and top-p, as `transformers` applies them when sampling; none for greedy or beams."""
    if options.temperature == 0:
        return []
    warpers: list[LogitsProcessor] = []
    if options.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(options.temperature))
    if options.top_p < 1.0:
        warpers.append(TopPLogitsWarper(options.top_p))
    return warpers


def stop_string_hits(tokenizer, new_ids: torch.Tensor, stop: tuple[str, ...]) -> torch.Tensor:
    """(N,) bool: rows whose decoded new tokens contain a stop string."""
    texts = tokenizer.batch_decode(new_ids, skip_special_tokens=True)
    return torch.tensor([cut_at_stop(t, stop)[1] for t in texts], dtype=torch.bool, device=new_ids.device)


class StopStrings(StoppingCriteria):
    """Ends each candidate once its new text holds a stop string. Stateless, so beam search may
    reorder rows and ask about more candidates than it keeps."""

    def __init__(self, tokenizer, stop: tuple[str, ...], prompt_length: int) -> None:
        self.tokenizer, self.stop, self.prompt_length = tokenizer, stop, prompt_length

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        return stop_string_hits(self.tokenizer, input_ids[:, self.prompt_length :], self.stop)


class StepLogprobs(LogitsProcessor):
    """The last logits processor: keeps the log-probabilities of the distribution this step's tokens
    are drawn from (after temperature and top-p), for `RowEnds` to pick the drawn tokens' from."""

    def __init__(self) -> None:
        self.last: torch.Tensor | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.last = scores.float().log_softmax(-1)
        return scores


class RowEnds(StoppingCriteria):
    """Ends each row of `generate` on its own: at a stop token, once its new text holds a stop string,
    or when `on_tokens` (streaming) asks. Counts each row's tokens, keeps their log-probabilities, and
    hands each step's tokens (pad in rows already ended) to `on_tokens` with the rows alive before that step."""

    def __init__(self, tokenizer, stop_ids: list[int], stop: tuple[str, ...], prompt_length: int, rows: int,
                 pad_id: int, step: StepLogprobs, device: torch.device, on_tokens: OnTokens | None) -> None:
        self.tokenizer, self.stop, self.prompt_length, self.on_tokens = tokenizer, stop, prompt_length, on_tokens
        self.pad_id, self.step = pad_id, step
        self.stop_ids = torch.tensor(stop_ids, dtype=torch.long, device=device)
        self.alive = torch.ones(rows, dtype=torch.bool, device=device)
        self.lengths = torch.zeros(rows, dtype=torch.long, device=device)  # tokens each row produced
        self.logprobs: list[torch.Tensor] = []  # per step, (rows,)

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        alive = self.alive.clone()
        tokens = input_ids[:, -1].masked_fill(~alive, self.pad_id)
        self.logprobs.append(self.step.last.gather(1, tokens[:, None]).squeeze(1).masked_fill(~alive, 0.0))
        ended = torch.isin(tokens, self.stop_ids)
        if self.stop:
            ended |= stop_string_hits(self.tokenizer, input_ids[:, self.prompt_length :], self.stop)
        if self.on_tokens is not None:
            asked = self.on_tokens(tokens, alive)
            if asked is not None:
                ended |= asked.to(device=tokens.device, dtype=torch.bool)
        self.lengths += alive.long()
        self.alive &= ~ended
        return ~self.alive


@torch.no_grad()
def hf_generate(model, tokenizer, inputs: dict, options: GenerationOptions, *, stop_ids: list[int], pad_id: int,
                max_context: int, on_tokens: OnTokens | None = None) -> Generation:
    """`model.generate(**inputs)` as `options` say. `inputs` holds `attention_mask` and either
    `inputs_embeds` (the output has only new tokens) or `input_ids` (the prompt comes back first).
    At most `max_context` positions are used: the prompt plus the new tokens. An encoder-decoder model
    reads the prompt in its encoder, so its decoder holds only the decoder start token (which comes
    back first and is dropped) and the new tokens."""
    attn = inputs["attention_mask"]
    prompt = attn.shape[1]
    rows = attn.shape[0] * options.num_return_sequences
    beams = options.num_beams > 1
    if on_tokens is not None and beams:
        raise ValueError("token streaming covers greedy and sampled decoding, not beam search")
    if getattr(model.config, "is_encoder_decoder", False):
        skip = used = 1
    else:
        skip, used = (0 if "inputs_embeds" in inputs else prompt), prompt
    max_new_tokens = min(options.max_new_tokens, max_context - used)
    if max_new_tokens <= 0:
        empty = torch.zeros(rows, 0, dtype=torch.long, device=attn.device)
        return Generation([""] * rows, empty, empty.bool(), empty.float(), ["length"] * rows)
    config = generation_config(options, max_new_tokens, stop_ids, pad_id)
    with warnings.catch_warnings():
        # From embeddings the prompt has no ids, so a repetition penalty sees only the new tokens: as LAVIS and
        # DeltaVLM decode, and what rsforge means by it.
        warnings.filterwarnings("ignore", message="Passing `repetition_penalty` with `inputs_embeds`")
        return _generate(model, tokenizer, inputs, options, config, skip, rows, stop_ids, pad_id, on_tokens)


def _generate(model, tokenizer, inputs: dict, options: GenerationOptions, config: GenerationConfig, skip: int,
              rows: int, stop_ids: list[int], pad_id: int, on_tokens: OnTokens | None) -> Generation:
    attn = inputs["attention_mask"]
    if options.num_beams > 1:
        criteria = StoppingCriteriaList([StopStrings(tokenizer, options.stop, skip)] if options.stop else [])
        out = model.generate(**inputs, generation_config=config, stopping_criteria=criteria)
        token_ids = out.sequences[:, skip:]
        # -1 marks the steps after a beam ended; its stop token (if any) is the last step that counts.
        mask = out.beam_indices[:, : token_ids.shape[1]] >= 0
        logprobs = model.compute_transition_scores(out.sequences, out.scores, out.beam_indices).float()
    else:
        step = StepLogprobs()
        ends = RowEnds(tokenizer, stop_ids, options.stop, skip, rows, pad_id, step, attn.device, on_tokens)
        sequences = model.generate(**inputs, generation_config=config, stopping_criteria=StoppingCriteriaList([ends]),
                                   logits_processor=LogitsProcessorList([*sampling_processors(options), step]))
        token_ids = sequences[:, skip:]
        width = token_ids.shape[1]
        mask = torch.arange(width, device=token_ids.device) < ends.lengths[:, None]
        logprobs = torch.stack(ends.logprobs[:width], 1) if width else torch.zeros(rows, 0, device=attn.device)
    token_ids = token_ids.masked_fill(~mask, pad_id)
    logprobs = logprobs.masked_fill(~mask, 0.0)
    texts, reasons = finish(tokenizer, token_ids, mask, stop_ids, options.stop)
    return Generation(texts, token_ids, mask, logprobs, reasons)


def finish(tokenizer, token_ids: torch.Tensor, mask: torch.Tensor, stop_ids: list[int], stop: tuple[str, ...]
           ) -> tuple[list[str], list[str]]:
    """Each row's text (stop tokens dropped, cut before the first stop string) and why it ended."""
    texts, reasons = [], []
    for row, keep in zip(token_ids.tolist(), mask.tolist(), strict=True):
        counted = [t for t, k in zip(row, keep, strict=True) if k]
        text, by_string = cut_at_stop(tokenizer.decode([t for t in counted if t not in stop_ids],
                                                       skip_special_tokens=True), stop)
        texts.append(text.strip())
        reasons.append("stop" if by_string or any(t in stop_ids for t in counted) else "length")
    return texts, reasons
