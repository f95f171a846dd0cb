"""Several towers on one image, fused per patch (AerithVLM: CLIP ViT-L/14 + DINO ViT-B).

Each tower sees the image at its own `image_size` and normalises it itself; its patch tokens are
projected (Linear) to `out_dim`, their grid is resampled (bilinear) to a common grid, and the
towers are summed (default) or concatenated along the width. Maps: every tower's, in order."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rsforge.core.interfaces import Encoder
from rsforge.encoders.configs import DualEncoderConfig, HFVisionConfig, TimmEncoderConfig
from rsforge.encoders.timm_encoder import TimmEncoder


def build_tower(config: TimmEncoderConfig | HFVisionConfig) -> Encoder:
    if isinstance(config, HFVisionConfig):
        from rsforge.encoders.hf_vision import HFVisionEncoder  # transformers is an extra

        return HFVisionEncoder(config)
    return TimmEncoder(config)


def resize(x: torch.Tensor, size: int, mode: str, *, antialias: bool = False) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, size, size)."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    if mode == "nearest":
        return F.interpolate(x, size=(size, size), mode=mode)
    return F.interpolate(x, size=(size, size), mode=mode, align_corners=False, antialias=antialias)


class DualEncoder(Encoder):
    def __init__(self, config: DualEncoderConfig) -> None:
        super().__init__()
        self.config = config
        # Each tower decides on its own weights_from_source; the container reads it per sub-module.
        self.towers = nn.ModuleList(build_tower(c) for c in config.encoders)
        self.projections = nn.ModuleList(nn.Linear(t.out_dim, config.out_dim) for t in self.towers)
        self.out_dim = config.out_dim * (len(self.towers) if config.fusion == "concat" else 1)
        self.map_channels = [c for t in self.towers for c in t.map_channels]
        self.image_size = config.image_size
        self.interpolation = config.interpolation
        self.in_chans = self.towers[0].in_chans

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if images.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"encoder expects {self.image_size}x{self.image_size} images, got {tuple(images.shape)}")
        parts, maps, target = [], [], self.config.grid_size
        for i, (tower, project) in enumerate(zip(self.towers, self.projections, strict=True)):
            tokens, tower_maps = tower(resize(images, tower.image_size, tower.interpolation, antialias=True))
            side = math.isqrt(tokens.shape[1])
            if side * side != tokens.shape[1]:
                raise ValueError(f"encoders[{i}]: {tokens.shape[1]} tokens do not form a square grid")
            target = target or side
            grid = project(tokens).transpose(1, 2).unflatten(2, (side, side))
            parts.append(resize(grid, target, "bilinear").flatten(2).transpose(1, 2))
            maps += tower_maps
        fused = torch.stack(parts).sum(0) if self.config.fusion == "sum" else torch.cat(parts, dim=-1)
        return fused, maps
