"""Change-mask head: fuse each scale's [f0, f1, |f1 - f0|] (+ f0 * f1), merge the scales, upsample to the image.

Two ways to merge (`decoder`): "sum" adds every scale's fusion at the finest scale; "fpn" walks an FPN
top-down path, coarse to fine: upsample, add the next scale's lateral 1x1 conv, smooth with a 3x3 conv.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rsforge.core.interfaces import Head, VisualFeatures
from rsforge.heads.configs import ChangeMaskHeadConfig
from rsforge.heads.losses import mask_loss


def conv_block(cin: int, cout: int) -> nn.Sequential:
    # GroupNorm, not BatchNorm: tiled inference runs one tile at a time and DDP needs no SyncBN.
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(math.gcd(8, cout), cout),
                         nn.ReLU(inplace=True))


def _area(x: torch.Tensor) -> int:
    return x.shape[-2] * x.shape[-1]


class DifferenceNeck(Head):
    """Base of the mask heads: maps of both dates [(B, 2, C_i, H_i, W_i)] -> one fused map (B, hidden, H, W)
    at the finest scale. The layers sit on the head itself (`fuse`, `smooth`) so saved weights keep their names."""

    def build_neck(self, in_channels: list[int], hidden: int, *, decoder: str, product: bool) -> None:
        self.decoder, self.product = decoder, product
        terms = 4 if product else 3
        self.fuse = nn.ModuleList(nn.Conv2d(terms * c, hidden, 1) for c in in_channels)  # the lateral convs
        if decoder == "fpn":
            self.smooth = nn.ModuleList(conv_block(hidden, hidden) for _ in in_channels)

    def laterals(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(maps) != len(self.fuse) or any(m.dim() != 5 or m.shape[1] != 2 for m in maps):
            raise ValueError(
                f"{self.config.name} head needs {len(self.fuse)} maps of 2 dates (B, 2, C, H, W), got "
                f"{[tuple(m.shape) for m in maps]}"
            )
        out = []
        for fuse, m in zip(self.fuse, maps, strict=True):
            before, after = m[:, 0], m[:, 1]
            terms = [before, after, (after - before).abs()] + ([before * after] if self.product else [])
            out.append(fuse(torch.cat(terms, dim=1)))
        return out

    def neck(self, maps: list[torch.Tensor], top: torch.Tensor | None = None) -> torch.Tensor:
        """`top`: an extra coarsest level (B, hidden, h, w) the path starts from (or, for "sum", adds in)."""
        laterals = self.laterals(maps)
        if self.decoder == "sum":
            levels = laterals + ([top] if top is not None else [])
            size = max((x.shape[-2:] for x in levels), key=lambda s: s[0] * s[1])
            return sum(F.interpolate(x, size=size, mode="bilinear", align_corners=False) for x in levels)
        # Coarse to fine; a stable sort keeps the encoder's order among equal sizes.
        x = top
        for i in sorted(range(len(laterals)), key=lambda i: _area(laterals[i])):
            lateral = laterals[i]
            if x is not None:
                lateral = lateral + F.interpolate(x, size=lateral.shape[-2:], mode="bilinear", align_corners=False)
            x = self.smooth[i](lateral)
        return x


def upsample_to_image(x: torch.Tensor, refine: nn.Module, image_size: int) -> torch.Tensor:
    # Upsample in x2 steps, each refined by one shared block, so edges sharpen rather than stay
    # blocky and the head works for any ratio of image size to map size.
    while x.shape[-1] * 2 <= image_size:
        x = refine(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
    return x


class ChangeMaskHead(DifferenceNeck):
    def __init__(self, config: ChangeMaskHeadConfig) -> None:
        super().__init__()
        self.config = config
        h = config.hidden
        self.build_neck(config.in_channels, h, decoder=config.decoder, product=config.product)
        self.refine = nn.Sequential(conv_block(h, h), conv_block(h, h))
        self.classify = nn.Conv2d(h, config.num_classes, 1)

    def forward(self, features: VisualFeatures, image_size: int, instructions: list[str] | None = None) -> torch.Tensor:
        x = upsample_to_image(self.neck(features.maps), self.refine, image_size)
        return F.interpolate(self.classify(x), size=(image_size, image_size), mode="bilinear", align_corners=False)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return mask_loss(logits, target, self.config)
