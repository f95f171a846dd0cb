"""Length reward: how close a candidate's word count is to a target length."""

from __future__ import annotations

import math
from typing import Any

import torch

from rsforge.core.interfaces import Reward
from rsforge.rewards.common import as_scores, check_batch
from rsforge.rewards.configs import LengthConfig


class LengthReward(Reward):
    """exp(-(words - target)^2 / (2 sigma^2)) in (0, 1]: 1 on target. The target is the closest
    reference length (`closest`), the references' mean length (`mean`) or a fixed word count.
    Captions trained with CIDEr drift short or long; this pulls them back."""

    def __init__(self, config: LengthConfig) -> None:
        self.config = config

    def target(self, references: list[str]) -> float:
        if isinstance(self.config.target, int):
            return float(self.config.target)
        lengths = [len(r.split()) for r in references]
        return sum(lengths) / len(lengths) if self.config.target == "mean" else float("nan")

    def __call__(self, candidates: list[str], references: list[list[str]], extras: dict[str, Any] | None = None
                 ) -> torch.Tensor:
        check_batch("length", candidates, references)
        scores = []
        for candidate, refs in zip(candidates, references, strict=True):
            words = len(candidate.split())
            if self.config.target == "closest":
                gap = min(abs(words - len(r.split())) for r in refs)
            else:
                gap = abs(words - self.target(refs))
            scores.append(math.exp(-(gap**2) / (2 * self.config.sigma**2)))
        return as_scores(scores)
