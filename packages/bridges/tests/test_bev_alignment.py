import pytest
import torch

from rsforge.bridges.bev_alignment import BEVAlignment, LinearAttention
from rsforge.bridges.configs import BEVAlignmentConfig
from rsforge.core.interfaces import VisualFeatures


def _bev(**extra) -> BEVAlignment:
    torch.manual_seed(0)
    options = {"in_dim": 8, "out_dim": 12, "map_channels": [6, 10], "heads": 2, "key_dim": 4, **extra}
    return BEVAlignment(BEVAlignmentConfig(name="bev_alignment", **options)).eval()


def _features(seed: int = 0) -> VisualFeatures:
    g = torch.Generator().manual_seed(seed)
    maps = [torch.randn(2, 2, 6, 8, 8, generator=g), torch.randn(2, 2, 10, 4, 4, generator=g)]
    return VisualFeatures(torch.randn(2, 2, 16, 8, generator=g), maps)


def test_linear_attention_matches_the_paper_formula():
    torch.manual_seed(0)
    attend = LinearAttention(6, heads=2, key_dim=4)
    x = torch.randn(3, 20, 6)
    q, k, v = attend.to_qkv(x).split(8, dim=-1)
    out = []
    for h in range(2):  # per head: out = (Q / sqrt(d)) (softmax_channels(K)^T V)
        qh, kh, vh = (t[..., 4 * h : 4 * h + 4] for t in (q, k, v))
        out.append(qh / 2 @ (kh.softmax(-1).transpose(1, 2) @ vh))
    assert torch.allclose(attend(x), x + attend.to_out(torch.cat(out, -1)), atol=1e-6)


def test_aligns_every_scale_with_weights_shared_by_the_dates():
    bev = _bev()
    features = _features()
    out = bev(features)
    assert bev.bitemporal and bev.aligns_maps
    assert [m.shape for m in out.maps] == [m.shape for m in features.maps]
    assert out.tokens.shape == (2, 1, 16, 12)  # one token per pixel of the coarsest (4x4) scale
    swapped = bev(VisualFeatures(features.tokens.flip(1), [m.flip(1) for m in features.maps]))
    for a, b in zip(out.maps, swapped.maps, strict=True):
        assert torch.allclose(a, b.flip(1), atol=1e-6)  # the same alignment runs on each date
    assert not torch.allclose(out.tokens, swapped.tokens)  # but the fusion knows before from after


def test_without_tokens_the_encoder_difference_passes_and_every_parameter_trains():
    bev = _bev(out_dim=None, tokens=False).train()
    features = _features()
    out = bev(features)
    assert torch.equal(out.tokens, features.tokens[:, 1:] - features.tokens[:, :1])
    sum(m.square().mean() for m in out.maps).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in bev.parameters())
    with pytest.raises(ValueError, match="tokens: false passes the encoder's width on"):
        _bev(tokens=False)


def test_bad_inputs_name_the_problem():
    bev = _bev()
    features = _features()
    with pytest.raises(ValueError, match="needs a before/after pair, got 1 image"):
        bev(VisualFeatures(features.tokens[:, :1], features.maps))
    with pytest.raises(ValueError, match=r"maps have channels \[6\], but map_channels is \[6, 10\]"):
        bev(VisualFeatures(features.tokens, features.maps[:1]))
