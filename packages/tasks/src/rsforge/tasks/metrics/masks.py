"""Pixel metrics of binary change masks, accumulated over a whole split.

Scores are computed from the confusion counts of every pixel of the split, not averaged per image,
so a large image weighs more than a small one (the usual convention for LEVIR-CD and friends).
"""

from __future__ import annotations

import numpy as np
import torch

MaskLike = torch.Tensor | np.ndarray


def _binary(name: str, mask: MaskLike) -> torch.Tensor:
    """`mask` as a bool tensor, without a copy where possible (numpy arrays are wrapped, 0/1 bytes
    viewed as bools); non-binary values are an error rather than silently thresholded."""
    if isinstance(mask, np.ndarray):
        tensor = torch.from_numpy(np.ascontiguousarray(mask))
    elif isinstance(mask, torch.Tensor):
        tensor = mask
    else:
        raise TypeError(f"MaskConfusion: {name} must be a tensor or numpy array, got {type(mask).__name__}")
    if tensor.dim() not in (2, 3):
        raise ValueError(f"MaskConfusion: {name} must be (B, H, W) or (H, W), not {tuple(tensor.shape)}")
    if tensor.dtype == torch.bool:
        return tensor
    if tensor.numel() == 0:
        return tensor.bool()
    if tensor.is_floating_point():
        binary = bool(((tensor == 0) | (tensor == 1)).all())
    else:  # integers: one min/max pass is much cheaper than two comparisons
        low, high = torch.aminmax(tensor)
        binary = bool(low >= 0) and bool(high <= 1)
    if not binary:
        raise ValueError(f"MaskConfusion: {name} must be binary (bool or 0/1); threshold probabilities first")
    if tensor.dtype in (torch.uint8, torch.int8):
        return tensor.view(torch.bool)  # bytes holding 0/1 are valid bools: no copy
    return tensor != 0


def _check_shape(name: str, tensor: torch.Tensor, pred: torch.Tensor) -> None:
    if tensor.shape != pred.shape:
        raise ValueError(f"MaskConfusion: {name} is {tuple(tensor.shape)} but pred is {tuple(pred.shape)}")


def _ratio(numerator: int, denominator: int) -> float:
    """numerator / denominator, with 0/0 (an empty denominator) defined as 0.0."""
    return numerator / denominator if denominator else 0.0


class MaskConfusion:
    """Binary confusion counts (tp, fp, fn, tn) summed over the pixels of every `update`, and the
    scores derived from them by `compute`.

    Counts are Python ints (each update's are reduced in int64), so they cannot overflow, however
    large the masks or the split. Every ratio whose denominator is 0 is reported as 0.0: precision
    when nothing is predicted as change, recall when nothing changed, f1 and iou when neither, oa
    when no pixel was counted, and kappa when chance agreement is 1 (all counted pixels in one class
    in both prediction and target, where Cohen's kappa is 0/0).
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.tp = self.fp = self.fn = self.tn = 0

    def update(self, pred: MaskLike, target: MaskLike, valid: MaskLike | None = None) -> None:
        """Add a batch (B, H, W) or one mask (H, W): `pred` and `target` bool or 0/1, 1 = change;
        `valid` (same shape) marks the pixels to count, all of them when None."""
        p = _binary("pred", pred)
        t = _binary("target", target).to(p.device)
        _check_shape("target", t, p)
        if valid is not None:
            v = _binary("valid", valid).to(p.device)
            _check_shape("valid", v, p)
            p, t = p & v, t & v
            counted = int(torch.count_nonzero(v))
        else:
            counted = p.numel()
        # count_nonzero returns int64 and is far faster than summing bools
        tp = int(torch.count_nonzero(p & t))
        predicted, actual = int(torch.count_nonzero(p)), int(torch.count_nonzero(t))
        self.tp += tp
        self.fp += predicted - tp
        self.fn += actual - tp
        self.tn += counted - predicted - actual + tp

    def compute(self) -> dict[str, float]:
        """precision, recall, f1, iou, oa (overall accuracy) and kappa (Cohen's) of the counts so far."""
        tp, fp, fn, tn = self.tp, self.fp, self.fn, self.tn
        total = tp + fp + fn + tn
        # Cohen's kappa (po - pe) / (1 - pe), both sides multiplied by total^2 to stay in integers.
        chance = (tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)
        return {
            "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, tp + fn),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            "iou": _ratio(tp, tp + fp + fn),
            "oa": _ratio(tp + tn, total),
            "kappa": _ratio(total * (tp + tn) - chance, total * total - chance),
        }
