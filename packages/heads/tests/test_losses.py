"""Each loss against values worked out by hand on tiny tensors."""

import math

import pytest
import torch
from torchvision.ops import sigmoid_focal_loss

from rsforge.heads.configs import ChangeMaskHeadConfig
from rsforge.heads.losses import (
    binary_focal_loss,
    binary_mask_loss,
    dice_loss,
    focal_loss,
    mask_loss,
    multiclass_mask_loss,
)

LN2 = math.log(2)
# Two pixels at logit 0 (p = 0.5), one changed: BCE = ln 2 each; Dice = 1 - (2*0.5 + 1) / (1 + 1 + 1) = 1/3;
# focal (gamma 2): (1 - 0.5)^2 * ln 2 = ln 2 / 4 each.
LOGITS = torch.zeros(1, 1, 1, 2)
TARGET = torch.tensor([[[1.0, 0.0]]])


def test_dice_is_zero_for_a_perfect_mask_and_defined_for_an_empty_one():
    target = (torch.rand(2, 8, 8) > 0.5).float()
    assert dice_loss(target, target) < 1e-6
    assert dice_loss(torch.zeros(1, 8, 8), torch.zeros(1, 8, 8)) == 0
    assert dice_loss(torch.full((1, 2), 0.5), TARGET[0]) == pytest.approx(1 / 3)


def test_binary_bce_dice_focal_and_their_weighted_sum():
    def loss(**kw):
        return float(binary_mask_loss(LOGITS, TARGET, **{"bce_weight": 0.0, "dice_weight": 0.0, **kw}))

    assert loss(bce_weight=1) == pytest.approx(LN2)
    assert loss(bce_weight=1, pos_weight=3.0) == pytest.approx((3 * LN2 + LN2) / 2)  # changed pixel weighs 3
    assert loss(dice_weight=1) == pytest.approx(1 / 3)
    assert loss(focal_weight=1) == pytest.approx(LN2 / 4)
    assert loss(focal_weight=1, pos_weight=3.0) == pytest.approx((3 + 1) * LN2 / 4 / 2)
    assert loss(focal_weight=1, focal_gamma=0) == pytest.approx(LN2)  # gamma 0 is plain BCE
    assert loss(bce_weight=2, dice_weight=0.5, focal_weight=4) == pytest.approx(2 * LN2 + 1 / 6 + LN2)
    # A confident right pixel (logit 4, target 1) counts far less in focal than in BCE.
    easy = torch.tensor([4.0])
    ratio = binary_focal_loss(easy, torch.ones(1)) / torch.nn.functional.softplus(-easy)
    assert float(ratio) == pytest.approx((1 - torch.sigmoid(easy).item()) ** 2)


def test_multiclass_ce_dice_focal_with_class_weights():
    # Two pixels, both with logits [0, ln 3] (p = [1/4, 3/4]); targets class 1 and class 0.
    logits = torch.tensor([0.0, math.log(3)]).view(1, 2, 1, 1).expand(1, 2, 1, 2).contiguous()
    target = torch.tensor([[[1, 0]]])
    ce1, ce0 = -math.log(3 / 4), math.log(4)

    def loss(**kw):
        return float(multiclass_mask_loss(logits, target, **{"bce_weight": 0.0, "dice_weight": 0.0, **kw}))

    assert loss(bce_weight=1) == pytest.approx((ce1 + ce0) / 2)
    assert loss(bce_weight=1, class_weights=[1.0, 2.0]) == pytest.approx((2 * ce1 + ce0) / 3)  # weighted mean
    focal1, focal0 = (1 / 4) ** 2 * ce1, (3 / 4) ** 2 * ce0
    assert loss(focal_weight=1) == pytest.approx((focal1 + focal0) / 2)
    assert loss(focal_weight=1, class_weights=[1.0, 2.0]) == pytest.approx((2 * focal1 + focal0) / 2)
    # Dice over the one-hot classes: probs [[1/4, 1/4], [3/4, 3/4]], one-hot [[0, 1], [1, 0]];
    # inter = 1/4 + 3/4 = 1, sums 2 + 2 -> 1 - (2 + 1) / (4 + 1) = 0.4.
    assert loss(dice_weight=1) == pytest.approx(0.4)
    assert float(focal_loss(logits, target[0].long().unsqueeze(0), gamma=0)) == pytest.approx((ce1 + ce0) / 2)
    with pytest.raises(ValueError, match="class_weights has 1 entries for 2 classes"):
        loss(bce_weight=1, class_weights=[1.0])


def test_mask_loss_follows_the_head_config():
    config = ChangeMaskHeadConfig(name="change_mask", bce_weight=2, dice_weight=0.5, focal_weight=4)
    assert float(mask_loss(LOGITS, TARGET, config)) == pytest.approx(3 * LN2 + 1 / 6)
    with pytest.raises(ValueError, match="class_weights has 2 entries for num_classes=3"):
        ChangeMaskHeadConfig(name="change_mask", num_classes=3, class_weights=[1, 2])
    with pytest.raises(ValueError, match="pos_weight is for binary masks"):
        ChangeMaskHeadConfig(name="change_mask", num_classes=3, pos_weight=2.0)


def test_binary_focal_is_torchvisions_and_keeps_the_bce_pos_weight():
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 5, 7) * 3
    target = (torch.rand(2, 5, 7) > 0.7).float()
    pixels = logits[:, 0]
    for gamma in (0.0, 0.5, 2.0):
        expected = sigmoid_focal_loss(pixels, target, alpha=-1, gamma=gamma, reduction="mean")
        assert torch.allclose(binary_focal_loss(pixels, target, gamma=gamma), expected)
        # pos_weight is BCE's: (1 - p_t)^gamma times the pos-weighted BCE, as written out here.
        bce = torch.nn.functional.binary_cross_entropy_with_logits(pixels, target, pos_weight=torch.tensor(3.0),
                                                                   reduction="none")
        p_t = torch.where(target > 0, pixels.sigmoid(), 1 - pixels.sigmoid())
        weighted = ((1 - p_t) ** gamma * bce).mean()
        assert torch.allclose(binary_focal_loss(pixels, target, gamma=gamma, pos_weight=3.0), weighted)
    total = binary_mask_loss(logits, target, bce_weight=0.0, dice_weight=0.0, focal_weight=1.0)
    assert torch.allclose(total, sigmoid_focal_loss(pixels, target, alpha=-1, reduction="mean"))
