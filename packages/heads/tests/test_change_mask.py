import pytest
import torch

from rsforge.core.features import VisualFeatures
from rsforge.heads.change_mask import ChangeMaskHead
from rsforge.heads.configs import ChangeMaskHeadConfig
from rsforge.heads.losses import dice_loss


def _features(changed: torch.Tensor) -> VisualFeatures:
    """Maps where the after date differs from the before date exactly on `changed` (B, 8, 8)."""
    before = torch.zeros(changed.shape[0], 4, 8, 8)
    after = before + changed[:, None].float()
    return VisualFeatures(torch.zeros(changed.shape[0], 2, 1, 4), [torch.stack([before, after], 1)])


def test_dice_is_zero_for_a_perfect_mask_and_defined_for_an_empty_one():
    target = (torch.rand(2, 8, 8) > 0.5).float()
    assert dice_loss(target, target) < 1e-6
    assert dice_loss(torch.zeros(1, 8, 8), torch.zeros(1, 8, 8)) == 0


def test_head_learns_where_the_dates_differ():
    torch.manual_seed(0)
    head = ChangeMaskHead(ChangeMaskHeadConfig(name="change_mask", in_channels=[4], hidden=8))
    opt = torch.optim.Adam(head.parameters(), lr=0.02)
    changed = torch.rand(8, 8, 8) > 0.7
    target = changed.float().repeat_interleave(4, 1).repeat_interleave(4, 2)  # 32 px masks
    first = None
    for _ in range(40):
        loss = head.loss(head(_features(changed), 32), target)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.5 * first
    head.eval()
    pred = head(_features(changed), 32)[:, 0] > 0
    assert (pred == target.bool()).float().mean() > 0.9


def test_multiclass_head_and_shape_errors():
    head = ChangeMaskHead(ChangeMaskHeadConfig(name="change_mask", in_channels=[4], num_classes=3, hidden=8))
    logits = head(_features(torch.zeros(2, 8, 8, dtype=torch.bool)), 16)
    assert logits.shape == (2, 3, 16, 16)
    assert head.loss(logits, torch.randint(0, 3, (2, 16, 16))).dim() == 0
    with pytest.raises(ValueError, match="needs 1 maps of 2 dates"):
        head(VisualFeatures(torch.zeros(2, 1, 1, 4), [torch.zeros(2, 1, 4, 8, 8)]), 16)
