import pytest
import torch
from pydantic import ValidationError

from rsforge.bridges.attention_pooler import AttentionPooler
from rsforge.bridges.configs import AttentionPoolerConfig
from rsforge.core.interfaces import VisualFeatures


def _pooler(**extra) -> AttentionPooler:
    torch.manual_seed(0)
    options = {"in_dim": 8, "out_dim": 12, "num_queries": 5, "num_layers": 6, "num_heads": 2, "hidden": 16,
               "map_channels": [6, 10], **extra}
    return AttentionPooler(AttentionPoolerConfig(name="attention_pooler", **options)).eval()


def _features(t: int = 2, map_dates: int | None = None, seed: int = 0) -> VisualFeatures:
    g = torch.Generator().manual_seed(seed)
    dates = map_dates or t
    maps = [torch.randn(2, dates, 6, 4, 4, generator=g), torch.randn(2, dates, 10, 2, 2, generator=g)]
    return VisualFeatures(torch.randn(2, t, 9, 8, generator=g), maps)


def test_queries_summarise_each_image_and_blocks_spread_over_the_stages():
    pooler = _pooler()
    assert [len(stage) for stage in pooler.stages] == [2, 2, 2]  # 2 map levels + final tokens, 6 blocks
    assert [len(stage) for stage in _pooler(num_layers=4).stages] == [2, 1, 1]
    features = _features()
    out = pooler(features)
    assert out.tokens.shape == (2, 2, 5, 12)
    assert out.maps is features.maps
    # Images are pooled apart: changing image 2 (its tokens and maps) leaves image 1's queries alone.
    other = _features(seed=1)
    mixed = VisualFeatures(torch.cat([features.tokens[:, :1], other.tokens[:, 1:]], 1),
                           [torch.cat([a[:, :1], b[:, 1:]], 1) for a, b in zip(features.maps, other.maps, strict=True)])
    again = pooler(mixed).tokens
    assert torch.allclose(again[:, 0], out.tokens[:, 0], atol=1e-6)
    assert not torch.allclose(again[:, 1], out.tokens[:, 1])


def test_only_the_chosen_levels_are_read():
    pooler = _pooler(levels=[-1], num_layers=2)
    assert len(pooler.stages) == 2
    features = _features()
    out = pooler(features).tokens
    first_changed = VisualFeatures(features.tokens, [features.maps[0] + 1, features.maps[1]])
    last_changed = VisualFeatures(features.tokens, [features.maps[0], features.maps[1] + 1])
    assert torch.equal(pooler(first_changed).tokens, out)
    assert not torch.allclose(pooler(last_changed).tokens, out)


def test_tokens_only_without_maps():
    pooler = _pooler(map_channels=None, num_layers=1)
    out = pooler(VisualFeatures(torch.randn(3, 1, 9, 8)))
    assert out.tokens.shape == (3, 1, 5, 12)


def test_fused_tokens_read_both_dates_maps():
    pooler = _pooler()
    features = _features(t=1, map_dates=2)
    out = pooler(features).tokens
    assert out.shape == (2, 1, 5, 12)
    before_changed = VisualFeatures(features.tokens, [torch.cat([m[:, :1] + 1, m[:, 1:]], 1) for m in features.maps])
    assert not torch.allclose(pooler(before_changed).tokens, out)


def test_trains_end_to_end():
    pooler = _pooler().train()
    pooler(_features()).tokens.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in pooler.parameters())


def test_bad_configs_and_inputs_name_the_problem():
    with pytest.raises(ValidationError, match="fewer than the 3 stages"):
        AttentionPoolerConfig(name="attention_pooler", num_layers=2, map_channels=[4, 4])
    with pytest.raises(ValidationError, match=r"levels: \[2\] out of range for 2 map"):
        AttentionPoolerConfig(name="attention_pooler", map_channels=[4, 4], levels=[2])
    with pytest.raises(ValidationError, match="divisible by num_heads"):
        AttentionPoolerConfig(name="attention_pooler", hidden=10, num_heads=4)
    pooler = _pooler()
    features = _features()
    with pytest.raises(ValueError, match=r"maps\[1\] has 6 channels, but map_channels\[1\] is 10"):
        pooler(VisualFeatures(features.tokens, [features.maps[0], features.maps[0]]))
    with pytest.raises(ValueError, match="got 1 map"):
        pooler(VisualFeatures(features.tokens, features.maps[:1]))
    with pytest.raises(ValueError, match="hold 2 image"):
        pooler(VisualFeatures(torch.randn(2, 3, 9, 8), features.maps))
