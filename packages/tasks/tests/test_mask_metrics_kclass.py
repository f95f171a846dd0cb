"""K-class mask scores against numbers worked out by hand from their definitions: per-class IoU and mIoU,
and SECOND's SeK, Fscd and binary mIoU (Yang et al., "Asymmetric Siamese Networks for Semantic Change
Detection in Aerial Images", TGRS 2021; as Bi-SRNet's `utils/utils.py: SCDD_eval_all` computes them)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rsforge.tasks.metrics.masks import ClassConfusion, MaskConfusion

# Rows: target class, columns: predicted class; class 0 = no change. 100 pixels.
Q = np.array([[50, 4, 6],
              [3, 20, 5],
              [2, 4, 6]])  # fmt: skip


def _masks(matrix: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(pred, target) masks (10, 10) whose confusion matrix is `matrix`."""
    target = np.repeat(np.arange(3), matrix.sum(1))
    pred = np.concatenate([np.repeat(np.arange(3), row) for row in matrix])
    return torch.from_numpy(pred.reshape(10, 10)), torch.from_numpy(target.reshape(10, 10))


def test_scores_of_a_small_confusion_matrix_match_the_definitions():
    confusion = ClassConfusion(3, ["no change", "road", "building"])
    pred, target = _masks(Q)
    confusion.update(pred, target)
    assert (confusion.matrix == Q).all()
    scores = confusion.compute()

    # Per-class IoU = q_kk / (row_k + col_k - q_kk): rows 60, 28, 12; columns 55, 28, 17.
    assert scores["iou_no_change"] == pytest.approx(50 / 65)
    assert scores["iou_road"] == pytest.approx(20 / 36)
    assert scores["iou_building"] == pytest.approx(6 / 23)
    assert scores["miou"] == pytest.approx((50 / 65 + 20 / 36 + 6 / 23) / 3)
    assert scores["oa"] == pytest.approx(76 / 100)

    # SeK: Q with q_00 set to 0 sums to 50, its diagonal to 26 (rho = 0.52); its rows 10, 28, 12 and
    # columns 5, 28, 17 give eta = (10*5 + 28*28 + 12*17) / 50^2 = 1038 / 2500; kappa = (rho - eta) / (1 - eta).
    # IoU_2 (change) = changed-changed pixels / pixels not no-change in both = 35 / 50.
    kappa = (0.52 - 1038 / 2500) / (1 - 1038 / 2500)
    assert scores["sek"] == pytest.approx(kappa * math.exp(35 / 50 - 1))
    # SECOND's mIoU: the mean of IoU_1 (no change, 50 / (100 - 35)) and IoU_2.
    assert scores["miou_bc"] == pytest.approx((50 / 65 + 35 / 50) / 2)
    # Fscd: 26 changed pixels of the right class, 45 predicted changed, 40 changed -> hmean(26/45, 26/40).
    assert scores["fscd"] == pytest.approx(2 / (45 / 26 + 40 / 26))
    assert (confusion.tp, confusion.fp, confusion.fn, confusion.tn) == (35, 10, 5, 50)


def test_sek_against_an_independent_computation_on_random_maps():
    """SeK and mIoU from the paper's formulas, written out over numpy counts, on random maps summed over
    several updates (batches), as SECOND's evaluation sums its maps."""
    rng = np.random.default_rng(0)
    k = 7
    confusion = ClassConfusion(k)
    preds, targets = [], []
    for _ in range(3):
        target = rng.integers(0, k, (2, 16, 16)) * (rng.random((2, 16, 16)) < 0.6)
        pred = np.where(rng.random((2, 16, 16)) < 0.7, target, rng.integers(0, k, (2, 16, 16)))
        confusion.update(torch.from_numpy(pred), torch.from_numpy(target))
        preds.append(pred.ravel())
        targets.append(target.ravel())
    p, t = np.concatenate(preds), np.concatenate(targets)
    scores = confusion.compute()

    both_unchanged = np.sum((p == 0) & (t == 0))
    rest = ~((p == 0) & (t == 0))
    n = rest.sum()
    rho = np.sum(p[rest] == t[rest]) / n
    eta = sum(np.sum(t[rest] == c) * np.sum(p[rest] == c) for c in range(k)) / n**2
    change_iou = np.sum((p > 0) & (t > 0)) / (p.size - both_unchanged)
    assert scores["sek"] == pytest.approx((rho - eta) / (1 - eta) * math.exp(change_iou - 1))
    ious = [np.sum((p == c) & (t == c)) / np.sum((p == c) | (t == c)) for c in range(k)]
    assert scores["miou"] == pytest.approx(np.mean(ious))


def test_degenerate_counts_score_zero_not_nan_and_bad_ids_are_refused():
    confusion = ClassConfusion(3)
    assert all(v == 0.0 for v in confusion.compute().values())
    confusion.update(torch.zeros(4, 4, dtype=torch.long), torch.zeros(4, 4, dtype=torch.long))
    scores = confusion.compute()  # nothing changed anywhere: only class 0 has an IoU
    assert scores["sek"] == 0.0 and scores["miou"] == 1.0 and "iou_1" not in scores
    with pytest.raises(ValueError, match=r"pred holds ids 3\.\.3, outside 0\.\.2"):
        confusion.update(torch.full((2, 2), 3), torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="integer class ids"):
        confusion.update(torch.zeros(2, 2), torch.zeros(2, 2, dtype=torch.long))
    valid = torch.tensor([[True, False], [False, False]])
    confusion.reset()
    confusion.update(torch.ones(2, 2, dtype=torch.long), torch.ones(2, 2, dtype=torch.long), valid)
    assert confusion.matrix.sum() == 1


def test_mask_confusion_keeps_binary_scores_and_adds_class_scores_for_class_ids():
    pred, target = _masks(Q)
    binary = MaskConfusion()
    binary.update(pred > 0, target > 0)
    both = MaskConfusion()
    both.update_classes(pred, target, ["no change", "road", "building"])
    scores = both.compute()
    assert {k: scores[k] for k in binary.compute()} == binary.compute()  # binary scores of change unchanged
    assert scores["oa_classes"] == pytest.approx(0.76) and scores["iou_road"] == pytest.approx(20 / 36)
    with pytest.raises(ValueError, match="differ from the earlier"):
        both.update_classes(pred, target, ["a", "b", "c"])


def test_evaluation_scores_a_k_class_batch_with_its_class_table():
    from rsforge.core.batch import Batch
    from rsforge.tasks.evaluate import _update_confusion

    pred, target = _masks(Q)
    table = [{"name": "no change", "value": 0}, {"name": "road", "value": 128}, {"name": "building", "value": 255}]
    batch = Batch(images=torch.zeros(2, 2, 3, 10, 10), conversations=[[], []],
                  masks=torch.stack([target, torch.zeros_like(target)]), mask_valid=torch.tensor([True, False]),
                  meta=[{"mask_classes": table}, {}])
    confusion = MaskConfusion()
    _update_confusion(confusion, batch, torch.stack([pred, pred]))
    assert confusion.compute()["iou_road"] == pytest.approx(20 / 36) and confusion.tp == 35
