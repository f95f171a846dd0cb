"""Length rewards: the seed's token count, and closeness of the word count to a target length."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from rsforge.core.interfaces import Reward
from rsforge.rewards.common import as_scores, check_batch
from rsforge.rewards.configs import LengthConfig, LengthTargetConfig


class TokenCount(Reward):
    """The seed's `length` signal. `mode: tokens` (the default) follows the README: the number of tokens
    of the generated caption, maximised ("length: opposite of the number of tokens in the generated
    caption", negated there because it minimises a loss; the reward here is the count itself, and SCST
    maximises rewards). Tokens are the whitespace-separated words of the PTB-normalised caption.

    `mode: negative_bytes` follows the seed's public code instead (`rewards.py`, `length_penalization`):
    minus the caption's UTF-8 byte length, which under the code's policy loss shortens captions, the
    opposite of the README's stated aim of longer ones. Here the bytes are those of the PTB-normalised
    caption, as every reward reads it. The seed scales either only through its running min-max
    normalisation, which the trainer's reward set applies."""

    def __init__(self, config: LengthConfig) -> None:
        self.config = config

    def __call__(self, candidates: Sequence[str], references: Sequence[Sequence[str]],
                 extras: dict[str, Any] | None = None) -> torch.Tensor:
        check_batch("length", candidates, references)
        if self.config.mode == "negative_bytes":
            return as_scores([-float(len(c.encode("utf-8"))) for c in candidates])
        return as_scores([float(len(c.split())) for c in candidates])


class LengthReward(Reward):
    """exp(-(words - target)^2 / (2 sigma^2)) in (0, 1]: 1 on target. The target is the closest
    reference length (`closest`), the references' mean length (`mean`) or a fixed word count.
    Captions trained with CIDEr drift short or long; this pulls them back."""

    def __init__(self, config: LengthTargetConfig) -> None:
        self.config = config

    def target(self, references: list[str]) -> float:
        if isinstance(self.config.target, int):
            return float(self.config.target)
        lengths = [len(r.split()) for r in references]
        return sum(lengths) / len(lengths) if self.config.target == "mean" else float("nan")

    def __call__(self, candidates: list[str], references: list[list[str]], extras: dict[str, Any] | None = None
                 ) -> torch.Tensor:
        check_batch("length_target", candidates, references)
        scores = []
        for candidate, refs in zip(candidates, references, strict=True):
            words = len(candidate.split())
            if self.config.target == "closest":
                gap = min(abs(words - len(r.split())) for r in refs)
            else:
                gap = abs(words - self.target(refs))
            scores.append(math.exp(-(gap**2) / (2 * self.config.sigma**2)))
        return as_scores(scores)
