"""Minimal parts registered in-process, so kernel tests need no plugin package installed."""

from __future__ import annotations

import torch
from torch import nn

from rsforge.core.configs import BridgeConfig, EncoderConfig
from rsforge.core.hookspecs import hookimpl
from rsforge.core.interfaces import Bridge, Encoder, VisualFeatures


class ToyEncoderConfig(EncoderConfig):
    dim: int = 8
    patch: int = 8


class ToyEncoder(Encoder):
    def __init__(self, config: ToyEncoderConfig) -> None:
        super().__init__()
        self.image_size, self.out_dim, self.map_channels = config.image_size, config.dim, [config.dim]
        self.conv = nn.Conv2d(3, config.dim, config.patch, stride=config.patch)

    def forward(self, images):
        maps = self.conv(images)
        return maps.flatten(2).transpose(1, 2), [maps]


class ToyBridgeConfig(BridgeConfig):
    num_queries: int = 4
    frozen_source_seed: int | None = None  # stands in for a pretrained checkpoint the config names
    tie: bool = False


class ToyBridge(Bridge):
    def __init__(self, config: ToyBridgeConfig) -> None:
        super().__init__()
        self.in_dim, self.out_dim = config.in_dim, config.out_dim or config.in_dim
        self.proj = nn.Linear(self.in_dim, self.out_dim)
        if config.frozen_source_seed is not None:
            # "Loads" fixed weights from its source, freezes them, and adds a trainable part.
            self.weights_from_source = True
            self.base = nn.Linear(self.out_dim, self.out_dim)
            with torch.no_grad():
                self.base.weight.copy_(torch.randn(self.out_dim, self.out_dim,
                                                   generator=torch.Generator().manual_seed(config.frozen_source_seed)))
            self.base.requires_grad_(False)
        if config.tie:
            self.tied = nn.Linear(self.in_dim, self.out_dim)
            self.tied.weight = self.proj.weight

    def forward(self, features: VisualFeatures, instructions: list[str] | None = None) -> VisualFeatures:
        return VisualFeatures(self.proj(features.tokens), features.maps)


class ToyPlugin:
    @hookimpl
    def register_encoders(self, register):
        register("toy", factory=f"{__name__}:ToyEncoder", config=ToyEncoderConfig)

    @hookimpl
    def register_bridges(self, register):
        register("toy_bridge", factory=f"{__name__}:ToyBridge", config=ToyBridgeConfig)


def toy_recipe(**overrides) -> dict:
    recipe = {"name": "toy", "encoder": {"name": "toy", "image_size": 16, "dim": 8},
              "bridges": [{"name": "toy_bridge"}, {"name": "toy_bridge", "out_dim": 6}]}
    recipe.update(overrides)
    return recipe


def make_input(seed: int = 0) -> torch.Tensor:
    return torch.rand(2, 1, 3, 16, 16, generator=torch.Generator().manual_seed(seed))
