"""Sampling helpers, stop strings, and what a generation call can return besides texts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import StoppingCriteria

OnTokens = Callable[[torch.Tensor, torch.Tensor], "torch.Tensor | None"]
"""Token streaming: called after every decoding step with that step's tokens (N,) (pad in rows that
had already ended) and `alive` (N,) bool, the rows whose token counts. It may return a bool (N,)
tensor of rows to end now (a caller's own length limit, a client that went away) or None. It runs
in the decoding thread, so it should hand the tokens on rather than do slow work."""


@dataclass
class Generation:
    """Texts plus the tokens behind them, `num_return_sequences` rows per input, input-major.

    `token_ids` (N, L) are the generated ids (pad after the end), `mask` (N, L) marks the tokens
    that count (up to and including the stop token), `logprobs` (N, L) the log-probability of each
    token under the distribution it was drawn from (temperature and top-p applied), no gradient.
    SCST recomputes them with gradient through `continuation_logits`.
    """

    texts: list[str]
    token_ids: torch.Tensor
    mask: torch.Tensor
    logprobs: torch.Tensor


def check_sampling(temperature: float, top_p: float, num_beams: int, num_return_sequences: int) -> None:
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if num_beams < 1 or num_return_sequences < 1:
        raise ValueError("num_beams and num_return_sequences must be >= 1")
    if num_beams > 1 and temperature > 0:
        raise ValueError("beam search is deterministic: use num_beams > 1 with temperature 0")
    if num_return_sequences > num_beams and temperature == 0:
        raise ValueError(
            f"{num_return_sequences} return sequences need sampling (temperature > 0) or at least as many beams"
        )


def top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero all but the smallest set of most likely tokens whose mass reaches top_p; renormalised."""
    if top_p >= 1.0:
        return probs
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    drop = sorted_probs.cumsum(-1) - sorted_probs > top_p  # the first token always stays
    sorted_probs = sorted_probs.masked_fill(drop, 0.0)
    kept = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return kept / kept.sum(-1, keepdim=True)


def pick(logits: torch.Tensor, temperature: float, top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Next token per row (greedy at temperature 0) and its log-probability."""
    if temperature > 0:
        probs = top_p_filter((logits / temperature).softmax(-1), top_p)
        token = torch.multinomial(probs, 1).squeeze(1)
        return token, probs.gather(1, token[:, None]).squeeze(1).log()
    token = logits.argmax(-1)
    return token, logits.log_softmax(-1).gather(1, token[:, None]).squeeze(1)


def cut_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """The text up to the earliest stop string, and whether one occurred."""
    cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


class StopStrings(StoppingCriteria):
    """Stops each row of `transformers.generate` once its new text contains a stop string."""

    def __init__(self, tokenizer, stop: list[str], prompt_length: int) -> None:
        self.tokenizer, self.stop, self.prompt_length = tokenizer, stop, prompt_length

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_length :], skip_special_tokens=True)
        return torch.tensor([cut_at_stop(t, self.stop)[1] for t in texts], device=input_ids.device)


def finish_texts(tokenizer, rows: list[list[int]], stop_ids: list[int], stop: list[str]) -> list[str]:
    """Decode generated ids: cut at the first stop id, then at the first stop string."""
    texts = []
    for row in rows:
        ends = [row.index(i) for i in stop_ids if i in row]
        if ends:
            row = row[: min(ends)]
        text = tokenizer.decode(row, skip_special_tokens=True)
        texts.append(cut_at_stop(text, stop)[0].strip())
    return texts
