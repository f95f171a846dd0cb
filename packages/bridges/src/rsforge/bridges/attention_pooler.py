"""Attention pooler (AerithVLM; LHRS-Bot's multi-level vision perceiver): a fixed number of learned
queries summarise each image, reading the encoder level by level.

Stages run in order: stage i reads level i (an encoder map named by `levels`, flattened back into one
token per pixel; a ViT's per-layer grids, or both towers' with a dual encoder), and the last stage
reads the final tokens. Every stage has its own learned queries, added to the queries carried over from
the stage before, so shallow levels inform what the deeper ones are asked. The `num_layers` residual
blocks (pre-norm cross-attention -> self-attention -> MLP) are spread over the stages, earlier stages
taking any extra. Output: (B, T, num_queries, out_dim), one set of queries per image.

When the tokens were already fused into one date (T=1) but the maps still hold both dates, a level's
keys are both dates' pixels together, so the fused image still sees either date at every level.
"""

from __future__ import annotations

import torch
from torch import nn

from rsforge.bridges.configs import AttentionPoolerConfig
from rsforge.core.interfaces import Bridge, VisualFeatures


class PoolerBlock(nn.Module):
    """Pre-norm: queries += CrossAttn(queries, keys); += SelfAttn(queries); += MLP(queries)."""

    def __init__(self, hidden: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm_q, self.norm_kv = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.cross = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.norm_self = nn.LayerNorm(hidden)
        self.self_attn = nn.MultiheadAttention(hidden, heads, batch_first=True)
        width = int(hidden * mlp_ratio)
        self.norm_mlp = nn.LayerNorm(hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, width), nn.GELU(), nn.Linear(width, hidden))

    def forward(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        q, kv = self.norm_q(queries), self.norm_kv(keys)
        queries = queries + self.cross(q, kv, kv, need_weights=False)[0]
        q = self.norm_self(queries)
        queries = queries + self.self_attn(q, q, q, need_weights=False)[0]
        return queries + self.mlp(self.norm_mlp(queries))


def _split(total: int, parts: int) -> list[int]:
    """`total` blocks over `parts` stages as evenly as possible, earlier stages taking the remainder."""
    base, extra = divmod(total, parts)
    return [base + (i < extra) for i in range(parts)]


class AttentionPooler(Bridge):
    def __init__(self, config: AttentionPoolerConfig) -> None:
        super().__init__()
        self.in_dim = config.in_dim
        self.out_dim = config.out_dim or config.in_dim
        self.config = config
        self.map_channels = list(config.map_channels or [])
        self.levels = config.read_levels
        h = config.hidden
        # One input projection per stage: each level has its own width (ViT layers, or two towers).
        widths = [self.map_channels[i] for i in self.levels] + [self.in_dim]
        self.inputs = nn.ModuleList(nn.Linear(w, h) for w in widths)
        self.queries = nn.ParameterList(nn.Parameter(torch.randn(config.num_queries, h) * 0.02) for _ in widths)
        self.stages = nn.ModuleList(
            nn.ModuleList(PoolerBlock(h, config.num_heads, config.mlp_ratio) for _ in range(n))
            for n in _split(config.num_layers, len(widths))
        )
        self.norm = nn.LayerNorm(h)
        self.proj = nn.Linear(h, self.out_dim)

    def _level_keys(self, level: torch.Tensor, images: int, index: int) -> torch.Tensor:
        """A map (B, T', C, H, W) -> keys (B*T, L, C), one row per image of the tokens (T of them)."""
        if level.dim() != 5:
            raise ValueError(f"attention_pooler: maps[{index}] must be (B, T, C, H, W), got {tuple(level.shape)}")
        dates, c = level.shape[1:3]
        if c != self.map_channels[index]:
            raise ValueError(f"attention_pooler: maps[{index}] has {c} channels, but map_channels[{index}] "
                             f"is {self.map_channels[index]}")
        pixels = level.flatten(3).transpose(2, 3)  # (B, T', H*W, C)
        if dates == images:
            return pixels.flatten(0, 1)
        if images == 1:  # tokens fused into one date: its keys are every date's pixels
            return pixels.flatten(1, 2)
        raise ValueError(f"attention_pooler: maps[{index}] hold {dates} image(s) but the tokens {images}")

    def forward(self, features: VisualFeatures, instructions: list[str] | None = None) -> VisualFeatures:
        tokens = features.tokens
        if tokens.shape[-1] != self.in_dim:
            raise ValueError(f"attention_pooler: tokens have width {tokens.shape[-1]}, expected in_dim={self.in_dim}")
        if len(features.maps) != len(self.map_channels):
            raise ValueError(f"attention_pooler: got {len(features.maps)} map(s), but map_channels names "
                             f"{len(self.map_channels)}; set map_channels to the encoder's map channels")
        b, t = tokens.shape[:2]
        sources = [self._level_keys(features.maps[i], t, i) for i in self.levels] + [tokens.flatten(0, 1)]
        queries = tokens.new_zeros(b * t, *self.queries[0].shape)
        for source, project, own, blocks in zip(sources, self.inputs, self.queries, self.stages, strict=True):
            keys = project(source)
            queries = queries + own
            for block in blocks:
                queries = block(queries, keys)
        out = self.proj(self.norm(queries)).unflatten(0, (b, t))
        return VisualFeatures(tokens=out, maps=features.maps)
