"""Mask and class losses: BCE (or CE), soft Dice and Focal, summed with weights from the head config.

Binary masks: logits (B, 1, H, W) against a 0/1 target (B, H, W); `pos_weight` boosts the rare changed
pixels in BCE and Focal. K-class masks (semantic change): logits (B, K, H, W) against class ids (B, H, W);
`class_weights` (K,) weight CE and Focal per target class.

The binary focal loss is torchvision's `sigmoid_focal_loss`. The K-class one is a softmax focal loss,
which torchvision does not have: its `sigmoid_focal_loss` scores every class as an independent
one-vs-rest sigmoid (RetinaNet), a different loss from the focal term on the softmax probability of
the one true class among mutually exclusive classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss


def dice_loss(probs: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft Dice over each image, averaged; `eps` keeps empty masks (no change) well defined."""
    dims = tuple(range(1, probs.dim()))
    inter = (probs * target).sum(dims)
    return (1 - (2 * inter + eps) / (probs.sum(dims) + target.sum(dims) + eps)).mean()


def binary_focal_loss(
    logits: torch.Tensor, target: torch.Tensor, *, gamma: float = 2.0, pos_weight: float | None = None
) -> torch.Tensor:
    """Mean of (1 - p_t)^gamma * BCE per pixel: easy pixels (most of the unchanged land) count little.

    `pos_weight` weighs changed pixels as BCE's `pos_weight` does (w : 1 against unchanged ones). In
    torchvision's terms that is `alpha = w / (1 + w)` (alpha on changed pixels, 1 - alpha on the others)
    scaled by 1 + w; without it alpha is off (-1), every pixel weighing 1."""
    if pos_weight is None:
        return sigmoid_focal_loss(logits, target, alpha=-1, gamma=gamma, reduction="mean")
    alpha = pos_weight / (1 + pos_weight)
    return (1 + pos_weight) * sigmoid_focal_loss(logits, target, alpha=alpha, gamma=gamma, reduction="mean")


def focal_loss(
    logits: torch.Tensor, ids: torch.Tensor, *, gamma: float = 2.0, class_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Multi-class (softmax) focal loss: mean over pixels of w[y] * (1 - p_y)^gamma * -log p_y (w = 1
    without weights). Not torchvision's `sigmoid_focal_loss` (module docstring)."""
    ce = F.cross_entropy(logits, ids, reduction="none")  # -log p_y per pixel
    loss = (1 - torch.exp(-ce)) ** gamma * ce
    if class_weights is not None:
        loss = loss * class_weights[ids]
    return loss.mean()


def binary_mask_loss(
    logits: torch.Tensor, target: torch.Tensor, *, bce_weight: float, dice_weight: float,
    pos_weight: float | None = None, focal_weight: float = 0.0, focal_gamma: float = 2.0,
) -> torch.Tensor:
    """logits (B, 1, H, W), target (B, H, W) of 0/1."""
    logits = logits[:, 0]
    target = target.float()
    weight = torch.tensor(pos_weight, device=logits.device) if pos_weight is not None else None
    total = bce_weight * F.binary_cross_entropy_with_logits(logits, target, pos_weight=weight)
    total = total + dice_weight * dice_loss(logits.sigmoid(), target)
    if focal_weight:  # skipped at 0 so the default loss is exactly BCE + Dice
        total = total + focal_weight * binary_focal_loss(logits, target, gamma=focal_gamma, pos_weight=pos_weight)
    return total


def multiclass_mask_loss(
    logits: torch.Tensor, target: torch.Tensor, *, bce_weight: float, dice_weight: float,
    focal_weight: float = 0.0, focal_gamma: float = 2.0, class_weights: Sequence[float] | None = None,
) -> torch.Tensor:
    """logits (B, K, H, W), target (B, H, W) of class ids; CE (`bce_weight`), Dice over the one-hot classes."""
    k = logits.shape[1]
    ids = target.long()
    weights = None
    if class_weights is not None:
        if len(class_weights) != k:
            raise ValueError(f"class_weights has {len(class_weights)} entries for {k} classes")
        weights = torch.tensor(list(class_weights), dtype=logits.dtype, device=logits.device)
    total = bce_weight * F.cross_entropy(logits, ids, weight=weights)
    onehot = F.one_hot(ids, k).permute(0, 3, 1, 2).to(logits.dtype)
    total = total + dice_weight * dice_loss(logits.softmax(1), onehot)
    if focal_weight:
        total = total + focal_weight * focal_loss(logits, ids, gamma=focal_gamma, class_weights=weights)
    return total


def mask_loss(logits: torch.Tensor, target: torch.Tensor, config) -> torch.Tensor:
    """The weighted loss a head config (`MaskLossConfig`) asks for, binary or K-class by the logits."""
    c = config
    if logits.shape[1] == 1:
        return binary_mask_loss(logits, target, bce_weight=c.bce_weight, dice_weight=c.dice_weight,
                                pos_weight=c.pos_weight, focal_weight=c.focal_weight, focal_gamma=c.focal_gamma)
    return multiclass_mask_loss(logits, target, bce_weight=c.bce_weight, dice_weight=c.dice_weight,
                                focal_weight=c.focal_weight, focal_gamma=c.focal_gamma, class_weights=c.class_weights)
