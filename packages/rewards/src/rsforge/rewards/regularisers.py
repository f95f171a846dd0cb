"""Logit regularisers: terms on the policy's token distributions, not on texts.

They follow their own interface, `rsforge.core.interfaces.LogitRegulariser`: `(logits (N, L, V), mask (N, L)) -> (N,)`,
and are registered through `register_rewards` like the rewards; the trainer's `RewardSet` keeps them
apart and adds `weight * mean(value)` to the SCST loss (a positive weight lowers the value, a
negative one raises it).
"""

from __future__ import annotations

import torch

from rsforge.core.interfaces import LogitRegulariser
from rsforge.rewards.configs import VarentropyConfig

_EPS = 1e-8


class Varentropy(LogitRegulariser):
    """Per sequence, the mean over its tokens (mask True; after EOS is False) of the token
    distribution's entropy H = -sum p log p, its varentropy V = sum p (log p + H)^2 (how unevenly
    surprising the candidate tokens are), or V / H."""


    def __init__(self, config: VarentropyConfig) -> None:
        self.config = config

    def __call__(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if logits.dim() != 3 or mask.shape != logits.shape[:2]:
            raise ValueError(f"varentropy: logits must be (N, L, V) and mask (N, L), got {tuple(logits.shape)} and "
                             f"{tuple(mask.shape)}")
        logp = torch.log_softmax(logits.float(), dim=-1)
        p = logp.exp()
        entropy = -(p * logp).sum(-1)
        if self.config.mode == "entropy":
            value = entropy
        else:
            value = (p * (logp + entropy[..., None]).square()).sum(-1)
            if self.config.mode == "ratio":
                value = value / (entropy + _EPS)
        mask = mask.to(value.dtype)
        return (value * mask).sum(1) / mask.sum(1).clamp(min=1)
