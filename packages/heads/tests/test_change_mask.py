import pytest
import torch

from rsforge.core.interfaces import VisualFeatures
from rsforge.heads.change_mask import ChangeMaskHead
from rsforge.heads.configs import ChangeMaskHeadConfig


def _features(changed: torch.Tensor) -> VisualFeatures:
    """Maps where the after date differs from the before date exactly on `changed` (B, 8, 8)."""
    before = torch.zeros(changed.shape[0], 4, 8, 8)
    after = before + changed[:, None].float()
    return VisualFeatures(torch.zeros(changed.shape[0], 2, 1, 4), [torch.stack([before, after], 1)])


@pytest.mark.parametrize("decoder", ["sum", "fpn"])
def test_head_learns_where_the_dates_differ(decoder):
    torch.manual_seed(0)
    head = ChangeMaskHead(ChangeMaskHeadConfig(name="change_mask", in_channels=[4], hidden=8, decoder=decoder))
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


def test_default_head_keeps_its_layers_so_saved_models_still_load():
    head = ChangeMaskHead(ChangeMaskHeadConfig(name="change_mask", in_channels=[16, 24], hidden=32))
    assert {k.split(".")[0] for k in head.state_dict()} == {"fuse", "refine", "classify"}
    assert [tuple(m.weight.shape) for m in head.fuse] == [(32, 48, 1, 1), (32, 72, 1, 1)]


def test_fpn_runs_coarse_to_fine_over_scales_of_any_order():
    config = ChangeMaskHeadConfig(name="change_mask", in_channels=[8, 4, 6], hidden=8, decoder="fpn", product=True)
    head = ChangeMaskHead(config)
    assert len(head.smooth) == 3 and head.fuse[0].in_channels == 4 * 8  # [f0, f1, |f1 - f0|, f0 * f1]
    maps = [torch.randn(2, 2, 8, 4, 4), torch.randn(2, 2, 4, 16, 16), torch.randn(2, 2, 6, 8, 8)]
    features = VisualFeatures(torch.zeros(2, 2, 1, 4), maps)
    assert head.neck(maps).shape == (2, 8, 16, 16)  # ends at the finest scale
    logits = head(features, 32)
    assert logits.shape == (2, 1, 32, 32)
    head.loss(logits, torch.zeros(2, 32, 32)).backward()
    assert all(p.grad is not None for p in head.parameters())
