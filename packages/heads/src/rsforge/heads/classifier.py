"""Scene-classification head: mean-pooled tokens -> class logits (B, K), trained with cross-entropy.

The model container trains it on `batch.labels` ((B,) class ids, -1 for samples without a label).
It pools every token of every image the model reads (a pair's two dates alike), so it does not make the
model read a pair (`bitemporal = False`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rsforge.core.interfaces import Head, VisualFeatures
from rsforge.heads.configs import ClassifierHeadConfig


class ClassifierHead(Head):
    predicts_mask = False
    bitemporal = False

    def __init__(self, config: ClassifierHeadConfig) -> None:
        super().__init__()
        self.config = config
        self.reads_bridged_tokens = config.reads_bridged_tokens()
        width = config.hidden or config.in_dim
        hidden = [nn.Linear(config.in_dim, width), nn.GELU()] if config.hidden else []
        self.mlp = nn.Sequential(nn.LayerNorm(config.in_dim), *hidden, nn.Linear(width, config.num_classes))
        weights = torch.tensor(config.class_weights) if config.class_weights is not None else None
        self.register_buffer("class_weights", weights, persistent=False)

    def forward(self, features: VisualFeatures, image_size: int, instructions: list[str] | None = None) -> torch.Tensor:
        tokens = features.tokens
        if tokens.dim() != 4 or tokens.shape[-1] != self.config.in_dim:
            raise ValueError(
                f"classifier head expects tokens (B, T, N, {self.config.in_dim}), got {tuple(tokens.shape)}"
            )
        return self.mlp(tokens.mean(dim=(1, 2)))

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits (B, K), target (B,) class ids."""
        return F.cross_entropy(logits, target.long(), weight=self.class_weights,
                               label_smoothing=self.config.label_smoothing)
