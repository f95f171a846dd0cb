"""BEV alignment (SegChange-R1): per-scale linear attention that maps both dates into one shared space.

Zhou, "SegChange-R1: LLM-Augmented Remote Sensing Change Detection", arXiv:2506.17944 (code:
github.com/Yu-Zhouz/SegChange-R1, models/encoders/bev.py). Each scale's pixels x (N = H*W of width C)
go through a multi-head linear attention whose weights both dates share, so misregistered or
differently lit dates land in the same "BEV" space:

    Q, K, V = x W_q, x W_k, x W_v              (per head, key_dim wide)
    K' = softmax(K) over the channel axis       (each key a distribution over the head's channels)
    context = K'^T V                            (key_dim x key_dim per head: linear in N, not quadratic)
    out = x + W_o (Q / sqrt(key_dim)) context   (residual, as the aligned map feeds the mask head)

The aligned maps come back per date (B, 2, C_i, H_i, W_i): `aligns_maps`, so mask heads read them.
Tokens for a decoder: the coarsest (last) aligned scale's [f1, f2, |f1 - f2|, f1 * f2] through a 1x1
conv, one token per pixel (B, 1, H*W, out_dim). A mask-only recipe sets `tokens: false`.
"""

from __future__ import annotations

import torch
from torch import nn

from rsforge.bridges.configs import BEVAlignmentConfig
from rsforge.core.interfaces import Bridge, VisualFeatures


class LinearAttention(nn.Module):
    """x (B, N, C) -> x + linear attention of x (B, N, C)."""

    def __init__(self, channels: int, heads: int, key_dim: int) -> None:
        super().__init__()
        self.heads, self.key_dim = heads, key_dim
        self.to_qkv = nn.Linear(channels, 3 * heads * key_dim, bias=False)
        self.to_out = nn.Linear(heads * key_dim, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.to_qkv(x).unflatten(-1, (3, self.heads, self.key_dim)).permute(2, 0, 3, 1, 4)
        context = torch.einsum("bhnd,bhne->bhde", k.softmax(dim=-1), v)
        out = torch.einsum("bhnd,bhde->bhne", q * self.key_dim**-0.5, context)
        return x + self.to_out(out.transpose(1, 2).flatten(2))


class BEVAlignment(Bridge):
    bitemporal = True
    aligns_maps = True

    def __init__(self, config: BEVAlignmentConfig) -> None:
        super().__init__()
        self.in_dim = config.in_dim
        self.map_channels = list(config.map_channels)
        self.out_dim = config.out_dim or config.in_dim
        if not config.tokens and self.out_dim != self.in_dim:
            raise ValueError(f"bev_alignment: tokens: false passes the encoder's width on (in_dim={self.in_dim}); "
                             f"out_dim={self.out_dim} needs tokens: true, or a projector bridge after it")
        self.align = nn.ModuleList(LinearAttention(c, config.heads, config.key_dim) for c in self.map_channels)
        self.fuse = nn.Conv2d(4 * self.map_channels[-1], self.out_dim, 1) if config.tokens else None

    def _check(self, features: VisualFeatures) -> None:
        if features.num_images != 2:
            raise ValueError(f"bev_alignment needs a before/after pair, got {features.num_images} image(s)")
        got = [m.shape[2] if m.dim() == 5 else tuple(m.shape) for m in features.maps]
        if got != self.map_channels:
            raise ValueError(f"bev_alignment: maps have channels {got}, but map_channels is {self.map_channels}; "
                             "set it to the encoder's map channels")
        dates = {m.shape[1] for m in features.maps}
        if dates != {2}:
            raise ValueError(f"bev_alignment: maps must hold both dates (B, 2, C, H, W), got {sorted(dates)} date(s)")

    def forward(self, features: VisualFeatures, instructions: list[str] | None = None) -> VisualFeatures:
        self._check(features)
        aligned = []
        for level, attend in zip(features.maps, self.align, strict=True):
            h, w = level.shape[-2:]
            pixels = level.flatten(3).transpose(2, 3)  # (B, 2, H*W, C); both dates share the weights
            aligned.append(attend(pixels.flatten(0, 1)).unflatten(0, level.shape[:2]).transpose(2, 3)
                           .unflatten(3, (h, w)))
        if self.fuse is None:
            tokens = features.tokens[:, 1:] - features.tokens[:, :1]
        else:
            before, after = aligned[-1].unbind(1)
            fused = self.fuse(torch.cat([before, after, (before - after).abs(), before * after], dim=1))
            tokens = fused.flatten(2).transpose(1, 2).unsqueeze(1)
        return VisualFeatures(tokens=tokens, maps=aligned)
