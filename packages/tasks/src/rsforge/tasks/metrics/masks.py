"""Pixel metrics of change masks, binary (`MaskConfusion`) and K-class (`ClassConfusion`), accumulated
over a whole split.

Scores are computed from the confusion counts of every pixel of the split, not averaged per image,
so a large image weighs more than a small one (the usual convention for LEVIR-CD and friends, and
for SECOND, whose evaluation sums one confusion matrix over all its maps).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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
        self.classes: ClassConfusion | None = None

    def update_classes(self, pred: MaskLike, target: MaskLike, names: Sequence[str]) -> None:
        """Add K-class masks (class ids, 0 = no change) of the classes `names`: counted as binary change
        (any class but 0) and, for `compute`'s class scores, in a `ClassConfusion` of those classes."""
        if self.classes is None:
            self.classes = ClassConfusion(len(names), names)
        elif list(names) != self.classes.names:
            raise ValueError(f"MaskConfusion: classes {list(names)} differ from the earlier {self.classes.names}")
        self.classes.update(pred, target)
        self.update(_class_ids("pred", pred, len(names)) > 0, _class_ids("target", target, len(names)) > 0)

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
        """precision, recall, f1, iou, oa (overall accuracy) and kappa (Cohen's) of the counts so far;
        after `update_classes`, also `ClassConfusion.compute`'s scores (its `oa` as `oa_classes`)."""
        tp, fp, fn, tn = self.tp, self.fp, self.fn, self.tn
        total = tp + fp + fn + tn
        # Cohen's kappa (po - pe) / (1 - pe), both sides multiplied by total^2 to stay in integers.
        chance = (tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)
        scores = {
            "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, tp + fn),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            "iou": _ratio(tp, tp + fp + fn),
            "oa": _ratio(tp + tn, total),
            "kappa": _ratio(total * (tp + tn) - chance, total * total - chance),
        }
        if self.classes is not None:  # K-class masks: their class scores too, "oa" being the binary one
            scores.update({("oa_classes" if k == "oa" else k): v for k, v in self.classes.compute().items()})
        return scores


def _class_ids(name: str, mask: MaskLike, num_classes: int) -> torch.Tensor:
    """`mask` as an int64 tensor of class ids in [0, num_classes); other values are an error."""
    tensor = torch.from_numpy(np.ascontiguousarray(mask)) if isinstance(mask, np.ndarray) else mask
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"ClassConfusion: {name} must be a tensor or numpy array, got {type(mask).__name__}")
    if tensor.dim() not in (2, 3):
        raise ValueError(f"ClassConfusion: {name} must be (B, H, W) or (H, W), not {tuple(tensor.shape)}")
    if tensor.is_floating_point() or tensor.dtype == torch.bool:
        raise ValueError(f"ClassConfusion: {name} must hold integer class ids, got {tensor.dtype}; take the "
                         "argmax of the logits first")
    if tensor.numel():
        low, high = torch.aminmax(tensor)
        if low < 0 or high >= num_classes:
            raise ValueError(f"ClassConfusion: {name} holds ids {int(low)}..{int(high)}, outside 0..{num_classes - 1}")
    return tensor.long()


def _kappa(matrix: np.ndarray) -> float:
    """Cohen's kappa of a confusion matrix, 0.0 where it is 0/0 (no pixels, or chance agreement 1)."""
    total = matrix.sum()
    if not total:
        return 0.0
    observed = np.trace(matrix) / total
    chance = float(matrix.sum(0) @ matrix.sum(1)) / total**2
    return (observed - chance) / (1 - chance) if chance != 1 else 0.0


class ClassConfusion:
    """A K x K confusion matrix of class-id masks (rows: target, columns: prediction), summed over the
    pixels of every `update`, and the scores `compute` derives from it. Class 0 is "no change", as in
    SECOND and LEVIR-MCI, for the semantic-change scores.

    `tp`, `fp`, `fn`, `tn` are the binary change counts (changed = any class but 0), so a K-class
    confusion reports where change is found as a binary one does."""

    def __init__(self, num_classes: int, names: Sequence[str] | None = None) -> None:
        if num_classes < 2:
            raise ValueError(f"ClassConfusion: num_classes must be at least 2, got {num_classes}")
        if names is not None and len(names) != num_classes:
            raise ValueError(f"ClassConfusion: {len(names)} names for {num_classes} classes")
        self.num_classes = num_classes
        self.names = list(names) if names is not None else [str(k) for k in range(num_classes)]
        self.reset()

    def reset(self) -> None:
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, pred: MaskLike, target: MaskLike, valid: MaskLike | None = None) -> None:
        """Add a batch (B, H, W) or one mask (H, W) of class ids; `valid` (bool, same shape) marks the
        pixels to count, all of them when None."""
        k = self.num_classes
        p = _class_ids("pred", pred, k)
        t = _class_ids("target", target, k).to(p.device)
        if t.shape != p.shape:
            raise ValueError(f"ClassConfusion: target is {tuple(t.shape)} but pred is {tuple(p.shape)}")
        codes = t * k + p
        if valid is not None:
            v = _binary("valid", valid).to(p.device)
            _check_shape("valid", v, p)
            codes = codes[v]
        self.matrix += torch.bincount(codes.flatten(), minlength=k * k).cpu().numpy().reshape(k, k)

    @property
    def tn(self) -> int:
        return int(self.matrix[0, 0])

    @property
    def fp(self) -> int:
        return int(self.matrix[0, 1:].sum())

    @property
    def fn(self) -> int:
        return int(self.matrix[1:, 0].sum())

    @property
    def tp(self) -> int:
        return int(self.matrix[1:, 1:].sum())

    def compute(self) -> dict[str, float]:
        """`iou_<class>` per class and `miou` their mean (classes in neither target nor prediction left
        out), `oa`; and SECOND's semantic-change scores (Yang et al., TGRS 2021, as Bi-SRNet's
        `SCDD_eval_all` computes them): `sek`, `fscd`, and `miou_bc`, the mean IoU of no change and change.
        A ratio whose denominator is 0 is 0.0, as in `MaskConfusion` (where Bi-SRNet's code gives NaN)."""
        m = self.matrix
        total = int(m.sum())
        inter = np.diag(m)
        union = m.sum(0) + m.sum(1) - inter
        ious = {name: inter[k] / union[k] for k, name in enumerate(self.names) if union[k]}
        scores = {f"iou_{name.replace(' ', '_')}": float(v) for name, v in ious.items()}
        scores["miou"] = float(np.mean(list(ious.values()))) if ious else 0.0
        scores["oa"] = _ratio(int(inter.sum()), total)
        # SeK: the kappa of the matrix without its no-change/no-change cell, times e^(IoU of change - 1)
        without_nc = m.copy()
        without_nc[0, 0] = 0
        change_iou = _ratio(self.tp, total - self.tn)
        scores["sek"] = _kappa(without_nc) * math.exp(change_iou - 1)
        scores["miou_bc"] = (_ratio(self.tn, total - self.tp) + change_iou) / 2
        # Fscd: precision and recall of the changed pixels that also got the right class
        right = int(inter[1:].sum())
        precision, recall = _ratio(right, self.tp + self.fp), _ratio(right, self.tp + self.fn)
        scores["fscd"] = _ratio(2 * precision * recall, precision + recall)
        return scores
