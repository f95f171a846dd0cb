"""mask_iou on hand-made masks; the varentropy regulariser (the seed's V/E and the per-token modes) against
direct formulas."""

from __future__ import annotations

import math

import pytest
import torch

from rsforge.rewards.configs import MaskIoUConfig, VarentropyConfig
from rsforge.rewards.masks import MaskIoU
from rsforge.rewards.regularisers import Varentropy


def test_mask_iou():
    target = torch.zeros(3, 4, 4)
    target[0, :2] = 1  # 8 pixels
    target[1, 0, 0] = 1
    pred = torch.zeros(3, 4, 4)
    pred[0, :1] = 1  # 4 pixels, all inside: IoU 0.5
    pred[1, 3, 3] = 1  # disjoint: IoU 0
    # Sample 2: both empty.
    reward = MaskIoU(MaskIoUConfig(name="mask_iou", from_logits=False))
    texts, refs = ["a", "b", "c"], [["a"], ["b"], ["c"]]
    assert reward(texts, refs, {"pred_masks": pred, "masks": target}).tolist() == pytest.approx([0.5, 0.0, 1.0])
    logits = (pred * 2 - 1) * 5  # the same masks as logits
    scores = MaskIoU(MaskIoUConfig(name="mask_iou"))(texts, refs, {"pred_masks": logits[:, None], "masks": target,
                                                                    "mask_valid": torch.tensor([1, 1, 0]).bool()})
    assert scores.tolist() == pytest.approx([0.5, 0.0, 0.0])  # sample 2 has no reference mask
    with pytest.raises(ValueError, match="extras lacks"):
        reward(texts, refs, {"masks": target})
    with pytest.raises(ValueError, match=r"must both be \(3, H, W\)"):
        reward(texts, refs, {"pred_masks": pred[:, :2], "masks": target})


def test_varentropy_modes_and_mask():
    logits = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [2.0, 0.0, -1.0, 0.5], [9.0, 9.0, 9.0, 9.0]]])
    mask = torch.tensor([[True, True, False]])
    p = torch.softmax(logits[0, 1], -1)
    h1 = float(-(p * p.log()).sum())
    v1 = float((p * (p.log() + h1) ** 2).sum())
    # Token 0 is uniform: entropy log 4, varentropy 0. Token 2 is after EOS and ignored.
    entropy = Varentropy(VarentropyConfig(name="varentropy", mode="entropy"))(logits, mask)
    assert entropy.item() == pytest.approx((math.log(4) + h1) / 2, rel=1e-5)
    varentropy = Varentropy(VarentropyConfig(name="varentropy", mode="varentropy"))(logits, mask)
    assert varentropy.item() == pytest.approx(v1 / 2, rel=1e-5)
    ratio = Varentropy(VarentropyConfig(name="varentropy", mode="ratio"))(logits, mask)
    assert ratio.item() == pytest.approx((0 + v1 / h1) / 2, rel=1e-4)
    with pytest.raises(ValueError, match=r"logits must be \(N, L, V\)"):
        Varentropy(VarentropyConfig(name="varentropy"))(logits[0], mask)


def test_the_default_is_the_seeds_entropy_variance_ratio():
    """base_task.py: entropy_per_token.var() / (entropy_per_token.mean() + 1e-7), over the batch's tokens."""
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 7, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]], dtype=torch.bool)
    values = Varentropy(VarentropyConfig(name="varentropy"))(logits, mask)
    logp = torch.log_softmax(logits, -1)
    entropy = -(logp.exp() * logp).sum(-1)[mask]  # the 8 sampled tokens; positions after EOS are left out
    expected = entropy.var() / (entropy.mean() + 1e-7)
    assert values.shape == (3,) and torch.allclose(values, expected.expand(3))  # one batch value per sequence
    values.mean().backward()
    assert logits.grad[0, 3].abs().sum() == 0 and logits.grad[1, 3].abs().sum() > 0
