"""Change-mask head: fuse each scale's [f0, f1, |f1 - f0|], merge scales, upsample to the image."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rsforge.core.features import Head, VisualFeatures
from rsforge.heads.configs import ChangeMaskHeadConfig
from rsforge.heads.losses import binary_mask_loss, multiclass_mask_loss


def _conv(cin: int, cout: int) -> nn.Sequential:
    # GroupNorm, not BatchNorm: tiled inference runs one tile at a time and DDP needs no SyncBN.
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(math.gcd(8, cout), cout),
                         nn.ReLU(inplace=True))


class ChangeMaskHead(Head):
    def __init__(self, config: ChangeMaskHeadConfig) -> None:
        super().__init__()
        self.config = config
        h = config.hidden
        self.fuse = nn.ModuleList(nn.Conv2d(3 * c, h, 1) for c in config.in_channels)
        self.refine = nn.Sequential(_conv(h, h), _conv(h, h))
        self.classify = nn.Conv2d(h, config.num_classes, 1)

    def forward(self, features: VisualFeatures, image_size: int) -> torch.Tensor:
        if features.num_images != 2 or len(features.maps) != len(self.fuse):
            raise ValueError(
                f"change_mask head needs {len(self.fuse)} maps of 2 dates, got {len(features.maps)} maps "
                f"of {features.num_images} date(s)"
            )
        # Scales are merged at the finest one, as an FPN's top-down path does.
        size = max((m.shape[-2:] for m in features.maps), key=lambda s: s[0] * s[1])
        merged = 0
        for fuse, maps in zip(self.fuse, features.maps, strict=True):
            before, after = maps[:, 0], maps[:, 1]
            x = fuse(torch.cat([before, after, (after - before).abs()], dim=1))
            merged = merged + F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        x = merged
        # Upsample in x2 steps, each refined by one shared block, so edges sharpen rather than stay
        # blocky and the head works for any ratio of image size to map size.
        while x.shape[-1] * 2 <= image_size:
            x = self.refine(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
        logits = self.classify(x)
        return F.interpolate(logits, size=(image_size, image_size), mode="bilinear", align_corners=False)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        c = self.config
        if c.num_classes == 1:
            return binary_mask_loss(logits, target, bce_weight=c.bce_weight, dice_weight=c.dice_weight,
                                    pos_weight=c.pos_weight)
        return multiclass_mask_loss(logits, target, bce_weight=c.bce_weight, dice_weight=c.dice_weight)
