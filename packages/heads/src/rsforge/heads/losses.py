"""Mask losses: BCE (or CE) plus soft Dice, each weighted from the recipe."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dice_loss(probs: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft Dice over each image, averaged; `eps` keeps empty masks (no change) well defined."""
    dims = tuple(range(1, probs.dim()))
    inter = (probs * target).sum(dims)
    return (1 - (2 * inter + eps) / (probs.sum(dims) + target.sum(dims) + eps)).mean()


def binary_mask_loss(
    logits: torch.Tensor, target: torch.Tensor, *, bce_weight: float, dice_weight: float,
    pos_weight: float | None = None,
) -> torch.Tensor:
    """logits (B, 1, H, W), target (B, H, W) of 0/1."""
    logits = logits[:, 0]
    weight = torch.tensor(pos_weight, device=logits.device) if pos_weight is not None else None
    bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=weight)
    return bce_weight * bce + dice_weight * dice_loss(logits.sigmoid(), target)


def multiclass_mask_loss(
    logits: torch.Tensor, target: torch.Tensor, *, bce_weight: float, dice_weight: float
) -> torch.Tensor:
    """logits (B, K, H, W), target (B, H, W) of class ids; Dice over the one-hot classes."""
    ids = target.long()
    ce = F.cross_entropy(logits, ids)
    onehot = F.one_hot(ids, logits.shape[1]).permute(0, 3, 1, 2).float()
    return bce_weight * ce + dice_weight * dice_loss(logits.softmax(1), onehot)
