"""How mask logits become change masks: one rule for training reports, evaluation, tiled detection of
whole scenes and the serving API. One channel (K = 1): the change probability is the sigmoid, and a
pixel changed when it is above the threshold. K classes: the softmax, and the most probable class."""

from __future__ import annotations

import torch


def mask_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Logits (B, K, H, W) -> probabilities of the same shape."""
    return logits.sigmoid() if logits.shape[1] == 1 else logits.softmax(dim=1)


def probabilities_to_mask(probabilities: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Probabilities (B, K, H, W) -> bool change mask (B, H, W) for K = 1, class ids (B, H, W) for K > 1.
    Probabilities, not logits, so blended tiles (weighted means of probabilities) follow the same rule."""
    if probabilities.shape[1] == 1:
        return probabilities[:, 0] > threshold
    return probabilities.argmax(dim=1)


def logits_to_mask(logits: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Logits (B, K, H, W) -> the change mask, as `probabilities_to_mask` decides."""
    return probabilities_to_mask(mask_probabilities(logits), threshold)


def mask_to_uint8(mask: torch.Tensor) -> torch.Tensor:
    """A mask as it is written to files and sent to clients: uint8, 0/255 for a binary mask (visible as
    an image), the class ids for a K-class one."""
    return mask.to(torch.uint8) * 255 if mask.dtype == torch.bool else mask.to(torch.uint8)
