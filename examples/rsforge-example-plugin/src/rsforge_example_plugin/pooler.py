"""token_pooler: average-pools each image's square grid of N = s x s visual tokens to `grid x grid`
tokens, then projects them linearly to `out_dim` (fewer, cheaper tokens for the decoder)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from rsforge.core.interfaces import Bridge, VisualFeatures
from rsforge_example_plugin.configs import TokenPoolerConfig


class TokenPooler(Bridge):
    def __init__(self, config: TokenPoolerConfig) -> None:
        super().__init__()
        if config.in_dim is None:
            raise ValueError("token_pooler: in_dim is not set (the assembler fills it from the upstream part)")
        self.in_dim = config.in_dim
        self.out_dim = config.out_dim or config.in_dim
        self.grid = config.grid
        self.proj = nn.Linear(self.in_dim, self.out_dim)

    def forward(self, features: VisualFeatures, instructions: list[str] | None = None) -> VisualFeatures:
        tokens = features.tokens  # (B, T, N, D)
        b, t, n, d = tokens.shape
        side = math.isqrt(n)
        if side * side != n or side < self.grid:
            raise ValueError(f"token_pooler: expects a square grid of at least {self.grid}x{self.grid} tokens, "
                             f"got {n} tokens (tokens shape {tuple(tokens.shape)})")
        grid = tokens.reshape(b * t, side, side, d).permute(0, 3, 1, 2)  # (B*T, D, s, s)
        pooled = F.adaptive_avg_pool2d(grid, self.grid).flatten(2).transpose(1, 2)  # (B*T, grid*grid, D)
        out: torch.Tensor = self.proj(pooled).reshape(b, t, self.grid * self.grid, self.out_dim)
        return VisualFeatures(tokens=out, maps=features.maps)  # maps pass through, dates kept apart
