import pytest
import torch
import torch.nn.functional as F

from rsforge.bridges.configs import DifferencePerceptionConfig
from rsforge.bridges.difference_perception import DifferencePerception
from rsforge.core.interfaces import VisualFeatures


def _bridge(**kw) -> DifferencePerception:
    return DifferencePerception(DifferencePerceptionConfig(name="difference_perception", **kw))


def test_both_dates_become_one_sequence_of_2n_tokens_and_maps_pass_unchanged():
    bridge = _bridge(in_dim=8, out_dim=12)
    maps = [torch.randn(2, 2, 4, 3, 3)]
    out = bridge(VisualFeatures(torch.randn(2, 2, 5, 8), maps))
    assert out.tokens.shape == (2, 1, 10, 12)
    assert out.maps[0] is maps[0]
    assert _bridge(in_dim=8).out_dim == 8  # DeltaVLM keeps the ViT width


def test_weights_are_shared_across_dates():
    # One set of CSRM weights for both dates: 4 square maps (2 with bias), the norm, and the fusion.
    d, out = 6, 10
    params = sum(p.numel() for p in _bridge(in_dim=d, out_dim=out).parameters())
    assert params == 4 * d * d + 2 * d + 2 * d + (3 * d * out + out)


def test_matches_a_hand_computation():
    torch.manual_seed(0)
    bridge = _bridge(in_dim=2, out_dim=3, norm_input=False).eval()
    w1, w2, w3, w4 = (torch.tensor(m, dtype=torch.float32) for m in (
        [[1.0, 0.0], [0.0, 2.0]], [[0.5, 0.0], [0.0, 0.5]], [[0.0, 1.0], [1.0, 0.0]], [[1.0, 1.0], [0.0, 1.0]]))
    bc, bg = torch.tensor([0.1, -0.1]), torch.tensor([0.0, 0.2])
    fuse_w, fuse_b = torch.arange(18, dtype=torch.float32).reshape(3, 6) / 10, torch.tensor([1.0, 0.0, -1.0])
    with torch.no_grad():
        bridge.context_diff.weight.copy_(w1)
        bridge.context_feat.weight.copy_(w2)
        bridge.context_feat.bias.copy_(bc)
        bridge.gate_diff.weight.copy_(w3)
        bridge.gate_feat.weight.copy_(w4)
        bridge.gate_feat.bias.copy_(bg)
        bridge.fuse.weight.copy_(fuse_w)
        bridge.fuse.bias.copy_(fuse_b)
    before, after = [1.0, 2.0], [3.0, 1.0]
    diff = [a - b for a, b in zip(after, before, strict=True)]  # [2, -1]

    def matvec(m, v):
        return [sum(m[i][j] * v[j] for j in range(len(v))) for i in range(len(m))]

    def hand(feat):
        c = [torch.tanh(torch.tensor(x)).item() for x in
             (a + b + c for a, b, c in zip(matvec(w1.tolist(), diff), matvec(w2.tolist(), feat), bc.tolist(),
                                           strict=True))]
        g = [torch.sigmoid(torch.tensor(x)).item() for x in
             (a + b + c for a, b, c in zip(matvec(w3.tolist(), diff), matvec(w4.tolist(), feat), bg.tolist(),
                                           strict=True))]
        filtered = [gi * ci for gi, ci in zip(g, c, strict=True)]
        return [e + b for e, b in zip(matvec(fuse_w.tolist(), feat + diff + filtered), fuse_b.tolist(), strict=True)]

    tokens = torch.tensor([[[before], [after]]])  # (B=1, T=2, N=1, D=2)
    out = bridge(VisualFeatures(tokens)).tokens
    assert out.shape == (1, 1, 2, 3)
    assert torch.allclose(out[0, 0], torch.tensor([hand(before), hand(after)]), atol=1e-5)


def test_input_norm_is_applied_to_each_date_before_the_difference():
    torch.manual_seed(0)
    bridge = _bridge(in_dim=4).eval()
    plain = _bridge(in_dim=4, norm_input=False).eval()
    plain.load_state_dict({k: v for k, v in bridge.state_dict().items() if not k.startswith("norm.")})
    tokens = torch.randn(2, 2, 3, 4) * 5 + 2
    with torch.no_grad():
        bridge.norm.weight.uniform_(0.5, 1.5)
        bridge.norm.bias.uniform_(-0.5, 0.5)
        normed = F.layer_norm(tokens, (4,), bridge.norm.weight, bridge.norm.bias)
    assert torch.allclose(bridge(VisualFeatures(tokens)).tokens, plain(VisualFeatures(normed)).tokens, atol=1e-5)


def test_no_change_and_order_matter():
    torch.manual_seed(0)
    bridge = _bridge(in_dim=8).eval()
    tokens = torch.randn(1, 2, 5, 8)
    out = bridge(VisualFeatures(tokens)).tokens
    assert not torch.allclose(out, bridge(VisualFeatures(tokens.flip(1))).tokens)


def test_training_reaches_every_csrm_weight():
    bridge = _bridge(in_dim=8, dropout=0.0).train()
    bridge(VisualFeatures(torch.randn(2, 2, 5, 8))).tokens.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in bridge.parameters())


def test_refuses_a_single_image_and_a_wrong_width():
    bridge = _bridge(in_dim=8)
    with pytest.raises(ValueError, match="needs a before/after pair, got 1 image"):
        bridge(VisualFeatures(torch.randn(2, 1, 5, 8)))
    with pytest.raises(ValueError, match="tokens of width 8, got 6"):
        bridge(VisualFeatures(torch.randn(2, 2, 5, 6)))
