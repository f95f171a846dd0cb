"""Bi-temporal difference fusion: the simplest change-aware bridge, one token per patch position."""

from __future__ import annotations

import torch
from torch import nn

from rsforge.bridges.configs import DifferenceBridgeConfig
from rsforge.core.interfaces import Bridge, VisualFeatures


class DifferenceBridge(Bridge):
    bitemporal = True

    def __init__(self, config: DifferenceBridgeConfig) -> None:
        super().__init__()
        self.in_dim = config.in_dim
        self.out_dim = config.out_dim or config.in_dim
        self.fusion = config.fusion
        width = 3 * self.in_dim if config.fusion == "concat_diff" else self.in_dim
        self.proj = nn.Sequential(nn.Linear(width, self.out_dim), nn.GELU(), nn.LayerNorm(self.out_dim))

    def forward(self, features: VisualFeatures, instructions: list[str] | None = None) -> VisualFeatures:
        if features.num_images != 2:
            raise ValueError(f"difference bridge needs a before/after pair, got {features.num_images} image(s)")
        before, after = features.tokens[:, 0], features.tokens[:, 1]
        diff = after - before
        fused = torch.cat([before, after, diff], dim=-1) if self.fusion == "concat_diff" else diff
        return VisualFeatures(tokens=self.proj(fused).unsqueeze(1), maps=features.maps)
