import pytest
import torch

from rsforge.bridges.configs import DifferenceBridgeConfig, MLPProjectorConfig
from rsforge.bridges.difference import DifferenceBridge
from rsforge.bridges.mlp_projector import MLPProjector
from rsforge.core.interfaces import VisualFeatures


def test_difference_bridge_fuses_two_dates_into_one():
    bridge = DifferenceBridge(DifferenceBridgeConfig(name="difference", in_dim=8, out_dim=12))
    tokens = torch.randn(2, 2, 5, 8)
    out = bridge(VisualFeatures(tokens))
    assert out.tokens.shape == (2, 1, 5, 12)
    swapped = bridge(VisualFeatures(tokens.flip(1)))
    assert not torch.allclose(out.tokens, swapped.tokens)  # before/after order matters


def test_diff_only_fusion_sees_no_change_in_identical_dates():
    bridge = DifferenceBridge(DifferenceBridgeConfig(name="difference", in_dim=8, fusion="diff"))
    same = torch.randn(1, 1, 5, 8).expand(1, 2, 5, 8)
    other = torch.randn(1, 1, 5, 8).expand(1, 2, 5, 8)
    assert torch.allclose(bridge(VisualFeatures(same)).tokens, bridge(VisualFeatures(other)).tokens)


def test_difference_bridge_refuses_a_single_image():
    bridge = DifferenceBridge(DifferenceBridgeConfig(name="difference", in_dim=8))
    with pytest.raises(ValueError, match="needs a before/after pair, got 1 image"):
        bridge(VisualFeatures(torch.randn(2, 1, 5, 8)))


def test_mlp_projector_maps_every_token():
    proj = MLPProjector(MLPProjectorConfig(name="mlp_projector", in_dim=8, out_dim=16, depth=3))
    assert sum(isinstance(m, torch.nn.Linear) for m in proj.mlp) == 3
    assert proj(VisualFeatures(torch.randn(2, 1, 5, 8))).tokens.shape == (2, 1, 5, 16)
