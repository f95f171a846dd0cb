"""Image separators: a multi-image token layout (LLaVA-interleave / Qwen-VL style) for generic
multi-image chat. The model container flattens the images' tokens into one sequence for the decoder;
without a marker the decoder could not tell where image 1 ends and image 2 begins. Each image's tokens
get a learned embedding of its position (image 1, image 2, ...) in front, and optionally a learned
end-of-image embedding behind: (B, T, N, D) -> (B, T, N + 1 (+ 1), D). Place it before the projector
(it keeps the width) or last, when the width already is the decoder's.
"""

from __future__ import annotations

import torch
from torch import nn

from rsforge.bridges.configs import ImageSeparatorsConfig
from rsforge.core.interfaces import Bridge, VisualFeatures


class ImageSeparators(Bridge):
    def __init__(self, config: ImageSeparatorsConfig) -> None:
        super().__init__()
        self.in_dim = config.in_dim
        self.out_dim = config.out_dim or config.in_dim
        if self.out_dim != self.in_dim:
            raise ValueError(f"image_separators keeps the width (in_dim={self.in_dim}) but out_dim={self.out_dim}; "
                             "put a projector bridge (mlp_projector) after it")
        self.max_images = config.max_images
        self.starts = nn.Parameter(torch.randn(config.max_images, self.in_dim) * 0.02)
        self.end = nn.Parameter(torch.randn(self.in_dim) * 0.02) if config.end_marker else None

    def forward(self, features: VisualFeatures, instructions: list[str] | None = None) -> VisualFeatures:
        tokens = features.tokens
        b, t, _, d = tokens.shape
        if t > self.max_images:
            raise ValueError(f"image_separators: {t} images per sample, but max_images is {self.max_images}")
        if d != self.in_dim:
            raise ValueError(f"image_separators: tokens have width {d}, expected in_dim={self.in_dim}")
        parts = [self.starts[:t].to(tokens.dtype)[None, :, None].expand(b, t, 1, d), tokens]
        if self.end is not None:
            parts.append(self.end.to(tokens.dtype).expand(b, t, 1, d))
        return VisualFeatures(tokens=torch.cat(parts, dim=2), maps=features.maps)
