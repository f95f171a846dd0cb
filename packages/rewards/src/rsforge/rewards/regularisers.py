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
_SEED_EPS = 1e-7  # the seed's guard on the mean entropy


class Varentropy(LogitRegulariser):
    """Terms on the token distributions' entropies H = -sum p log p (tokens with mask True; after EOS
    is False).

    `entropy_variance_ratio` (default), the seed's V/E term (InstructBLIP-SCST `base_task.py`,
    `train_rl_step`: "Add the weighted varentropy / entropy ratio to the loss -> Decrease varentropy,
    increase entropy"): over all the batch's tokens, the variance of their entropies (unbiased, as
    torch's `var`) divided by their mean entropy (+ 1e-7), one value for the batch, returned for each
    sequence so the trainer's mean is that value. The seed adds it to the loss with lambda = 1e-4 (a
    positive weight: it lowers the ratio). It takes every position of its teacher-forced logits,
    padding included; here only the sampled tokens count, so the value does not depend on how far a
    batch is padded.

    The others, per sequence, averaged over its tokens: `entropy` H, `varentropy` the entropix
    varentropy sum p (log p + H)^2 (how unevenly surprising the candidate tokens are), `ratio` the
    per-token varentropy / H."""

    def __init__(self, config: VarentropyConfig) -> None:
        self.config = config

    def __call__(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if logits.dim() != 3 or mask.shape != logits.shape[:2]:
            raise ValueError(f"varentropy: logits must be (N, L, V) and mask (N, L), got {tuple(logits.shape)} and "
                             f"{tuple(mask.shape)}")
        logp = torch.log_softmax(logits.float(), dim=-1)
        p = logp.exp()
        entropy = -(p * logp).sum(-1)
        if self.config.mode == "entropy_variance_ratio":
            tokens = entropy[mask.bool()]
            mean = tokens.mean() if len(tokens) else entropy.new_zeros(())
            variance = (tokens - mean).square().sum() / max(len(tokens) - 1, 1)
            return (variance / (mean + _SEED_EPS)).expand(len(logits))
        if self.config.mode == "entropy":
            value = entropy
        else:
            value = (p * (logp + entropy[..., None]).square()).sum(-1)
            if self.config.mode == "ratio":
                value = value / (entropy + _EPS)
        mask = mask.to(value.dtype)
        return (value * mask).sum(1) / mask.sum(1).clamp(min=1)
