"""LLaVA-style MLP projector: maps each visual token to the decoder's embedding width."""

from __future__ import annotations

from torch import nn

from rsforge.bridges.configs import MLPProjectorConfig
from rsforge.core.interfaces import Bridge, VisualFeatures


class MLPProjector(Bridge):
    def __init__(self, config: MLPProjectorConfig) -> None:
        super().__init__()
        self.in_dim = config.in_dim
        self.out_dim = config.out_dim or config.in_dim
        layers: list[nn.Module] = [nn.Linear(self.in_dim, self.out_dim)]
        for _ in range(config.depth - 1):
            layers += [nn.GELU(), nn.Linear(self.out_dim, self.out_dim)]
        self.mlp = nn.Sequential(*layers)

    def forward(self, features: VisualFeatures, instructions: list[str] | None = None) -> VisualFeatures:
        return VisualFeatures(tokens=self.mlp(features.tokens), maps=features.maps)
