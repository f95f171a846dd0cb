import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from transformers import Dinov2Config, Dinov2Model

from rsforge.core.model import RSForgeModel
from rsforge.encoders.configs import DualEncoderConfig, HFVisionConfig, TimmEncoderConfig
from rsforge.encoders.dual import DualEncoder

VIT = {"name": "timm", "model_name": "vit_tiny_patch16_224", "image_size": 32,
       "model_kwargs": {"patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}}
HF = {"name": "hf_vision", "image_size": 32, "config": {
    "model_type": "dinov2", "hidden_size": 48, "intermediate_size": 64, "num_hidden_layers": 1,
    "num_attention_heads": 2, "image_size": 32, "patch_size": 16}}


def _dual(**fields) -> DualEncoder:
    return DualEncoder(DualEncoderConfig(name="dual", image_size=32, out_dim=24, encoders=[VIT, HF], **fields)).eval()


def test_sub_configs_are_validated_by_name():
    config = DualEncoderConfig(name="dual", out_dim=8, encoders=[VIT, HF])
    assert isinstance(config.encoders[0], TimmEncoderConfig) and isinstance(config.encoders[1], HFVisionConfig)
    with pytest.raises(ValidationError, match=r"encoders\.0\.timm\.model_kwarg"):
        DualEncoderConfig(name="dual", out_dim=8, encoders=[{**VIT, "model_kwarg": {}}, HF])
    with pytest.raises(ValidationError, match=r"encoders\.1"):
        DualEncoderConfig(name="dual", out_dim=8, encoders=[VIT, {**HF, "name": "vit"}])
    with pytest.raises(ValidationError, match="keep_prefix_tokens"):
        DualEncoderConfig(name="dual", out_dim=8, encoders=[{**VIT, "keep_prefix_tokens": True}, HF])
    dumped = config.model_dump(mode="json")
    assert DualEncoderConfig.model_validate(dumped) == config  # a saved recipe reads back the same


def test_sum_fusion_projects_and_resamples_the_coarser_grid():
    enc = _dual()
    x = torch.rand(2, 3, 32, 32)
    tokens, maps = enc(x)
    assert tokens.shape == (2, 16, 24) and enc.out_dim == 24
    assert enc.map_channels == [32, 48] and [tuple(m.shape) for m in maps] == [(2, 32, 4, 4), (2, 48, 2, 2)]
    first, _ = enc.towers[0](x)
    second, _ = enc.towers[1](x)  # 2x2 patches of 16 px -> resampled to the ViT's 4x4 grid
    grid = enc.projections[1](second).transpose(1, 2).reshape(2, 24, 2, 2)
    up = F.interpolate(grid, size=(4, 4), mode="bilinear", align_corners=False).flatten(2).transpose(1, 2)
    assert torch.allclose(tokens, enc.projections[0](first) + up, atol=1e-6)


def test_concat_fusion_and_a_chosen_grid():
    enc = _dual(fusion="concat", grid_size=2)
    tokens, _ = enc(torch.rand(1, 3, 32, 32))
    assert tokens.shape == (1, 4, 48) and enc.out_dim == 48


def test_towers_see_the_image_at_their_own_size():
    small = {**HF, "image_size": 16, "interpolation": "bicubic"}
    enc = DualEncoder(DualEncoderConfig(name="dual", image_size=32, out_dim=8, encoders=[VIT, small]))
    tokens, maps = enc(torch.rand(1, 3, 32, 32))
    assert tokens.shape == (1, 16, 8) and maps[1].shape == (1, 48, 1, 1)


def test_frozen_pretrained_tower_is_not_saved_but_projections_are(tmp_path):
    torch.manual_seed(0)
    Dinov2Model(Dinov2Config(**HF["config"])).save_pretrained(tmp_path)
    tower = {"name": "hf_vision", "image_size": 32, "pretrained": str(tmp_path), "freeze": True}
    enc = DualEncoder(DualEncoderConfig(name="dual", image_size=32, out_dim=8, encoders=[VIT, tower]))
    assert not enc.weights_from_source and enc.towers[1].weights_from_source
    skipped = RSForgeModel._not_saved(enc)  # the container's rule, applied to this part
    assert skipped and all(n.startswith("towers.1.") for n in skipped)
    assert not any(n.startswith(("projections.", "towers.0.")) for n in skipped)


def test_aerith_towers_assemble_on_meta_at_full_size():
    clip_l = {"name": "hf_vision", "image_size": 224, "freeze": True, "config": {
        "model_type": "clip_vision_model", "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
        "num_attention_heads": 16, "image_size": 224, "patch_size": 14}}
    dino_b = {"name": "timm", "model_name": "vit_base_patch16_224", "image_size": 224, "freeze": True}
    with torch.device("meta"):
        enc = DualEncoder(DualEncoderConfig(name="dual", image_size=224, out_dim=4096, encoders=[clip_l, dino_b]))
        tokens, _ = enc(torch.empty(1, 3, 224, 224))
    assert tokens.shape == (1, 256, 4096)  # DINO's 14x14 grid resampled to CLIP's 16x16
    towers = [sum(p.numel() for p in t.parameters()) for t in enc.towers]
    assert towers[0] == pytest.approx(303e6, rel=0.01) and towers[1] == pytest.approx(86e6, rel=0.01)
