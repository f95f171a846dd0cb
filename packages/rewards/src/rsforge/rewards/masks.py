"""Mask IoU reward, for models with a change-mask head: IoU of predicted and reference change masks."""

from __future__ import annotations

from typing import Any

import torch

from rsforge.core.interfaces import Reward
from rsforge.rewards.common import check_batch
from rsforge.rewards.configs import MaskIoUConfig


class MaskIoU(Reward):
    """IoU of `extras["pred_masks"]` (B, H, W) logits or probabilities (`from_logits`) thresholded at
    `threshold`, against `extras["masks"]` (B, H, W) reference masks (> 0.5 = changed). Rows where
    `extras["mask_valid"]` (B,) is False get 0; both masks empty gives `empty`. The texts are unused
    (they only fix the batch size)."""

    reads_extras = frozenset({"pred_masks", "masks"})
    # The mask comes from the image pair, not from the sampled caption: no SCST signal (the assembler
    # refuses it in a recipe with an scst stage).
    reads_caption = False

    def __init__(self, config: MaskIoUConfig) -> None:
        self.config = config

    def __call__(self, candidates: list[str], references: list[list[str]], extras: dict[str, Any] | None = None
                 ) -> torch.Tensor:
        check_batch("mask_iou", candidates, references)
        extras = extras or {}
        missing = [k for k in sorted(self.reads_extras) if extras.get(k) is None]
        if missing:
            raise ValueError(f"mask_iou: extras lacks {missing} (needs pred_masks and masks, both (B, H, W))")
        pred, target = extras["pred_masks"].detach().float(), extras["masks"].detach().float()
        batch = len(candidates)
        if pred.dim() == 4 and pred.shape[1] == 1:  # (B, 1, H, W) logits of a binary head
            pred = pred[:, 0]
        if pred.shape != target.shape or pred.dim() != 3 or pred.shape[0] != batch:
            raise ValueError(f"mask_iou: pred_masks {tuple(pred.shape)} and masks {tuple(target.shape)} must both "
                             f"be ({batch}, H, W)")
        probs = pred.sigmoid() if self.config.from_logits else pred
        changed, truth = (probs > self.config.threshold).flatten(1), (target > 0.5).flatten(1)
        inter = (changed & truth).sum(1).float()
        union = (changed | truth).sum(1).float()
        iou = torch.where(union > 0, inter / union.clamp(min=1), torch.full_like(union, self.config.empty))
        valid = extras.get("mask_valid")
        if valid is not None:
            iou = torch.where(torch.as_tensor(valid, dtype=torch.bool, device=iou.device), iou, 0.0)
        return iou.cpu().float()
