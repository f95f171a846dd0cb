"""Mask decoder on the bridged visual tokens (DeltaVLM's mask branch): one model answers in text and in pixels.

The head declares `reads_bridged_tokens`, so the model container hands it the tokens after the bridge
chain (the fused date, (B, 1, N, D), from a bitemporal bridge such as `difference` or `idpm`) with the
encoder's maps of both dates. The tokens are laid back on their patch grid and decoded to the image; with
`use_maps` the grid starts an FPN top-down path over the encoder maps for sharper edges.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rsforge.core.interfaces import VisualFeatures
from rsforge.heads.change_mask import DifferenceNeck, conv_block, upsample_to_image
from rsforge.heads.configs import TokenMaskHeadConfig
from rsforge.heads.losses import mask_loss


class TokenMaskHead(DifferenceNeck):
    reads_bridged_tokens = True  # as its config says (the assembler reads that to fill in_dim)

    def __init__(self, config: TokenMaskHeadConfig) -> None:
        super().__init__()
        self.config = config
        h = config.hidden
        self.proj = nn.Sequential(nn.LayerNorm(config.in_dim), nn.Linear(config.in_dim, h))
        if config.use_maps:
            self.build_neck(config.in_channels, h, decoder="fpn", product=config.product)
        self.refine = nn.Sequential(conv_block(h, h), conv_block(h, h))
        self.classify = nn.Conv2d(h, config.num_classes, 1)

    def grid(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, 1, N, D) -> (B, hidden, s, s) on the patch grid, prefix tokens dropped."""
        c = self.config
        if tokens.dim() != 4 or tokens.shape[1] != 1 or tokens.shape[-1] != c.in_dim:
            raise ValueError(
                f"token_mask head reads the fused date's tokens (B, 1, N, {c.in_dim}), got {tuple(tokens.shape)}; "
                "put a bitemporal bridge (e.g. difference) before it and set in_dim to its out_dim"
            )
        patches = tokens[:, 0, c.prefix_tokens :]
        side = math.isqrt(patches.shape[1])
        if side * side != patches.shape[1]:
            raise ValueError(
                f"token_mask head: {patches.shape[1]} tokens after dropping prefix_tokens={c.prefix_tokens} "
                "make no square patch grid (query tokens, e.g. a Q-Former's, have no grid)"
            )
        return self.proj(patches).transpose(1, 2).unflatten(2, (side, side))

    def forward(self, features: VisualFeatures, image_size: int, instructions: list[str] | None = None) -> torch.Tensor:
        x = self.grid(features.tokens)
        if self.config.use_maps:
            x = self.neck(features.maps, top=x)
        x = upsample_to_image(x, self.refine, image_size)
        return F.interpolate(self.classify(x), size=(image_size, image_size), mode="bilinear", align_corners=False)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return mask_loss(logits, target, self.config)
