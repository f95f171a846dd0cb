import logging

import pytest
import timm
import torch
from pydantic import ValidationError
from safetensors.torch import save_file
from timm.models import adapt_input_conv

from rsforge.encoders.configs import TimmEncoderConfig
from rsforge.encoders.timm_encoder import TimmEncoder

VIT = {"model_name": "vit_tiny_patch16_224", "image_size": 32,
       "model_kwargs": {"patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}}
SWIN = {"model_name": "swin_tiny_patch4_window7_224", "image_size": 64,
        "model_kwargs": {"embed_dim": 16, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 2, 2), "window_size": 4}}


def _config(**extra) -> TimmEncoderConfig:
    return TimmEncoderConfig(name="timm", **{**VIT, **extra})


def _source_vit(in_chans: int = 3):
    torch.manual_seed(3)
    return timm.create_model(VIT["model_name"], num_classes=0, img_size=32, in_chans=in_chans, **VIT["model_kwargs"])


def test_vit_tokens_are_patches_and_maps_are_grids():
    enc = TimmEncoder(_config(num_maps=1))
    tokens, maps = enc(torch.rand(2, 3, 32, 32))
    assert tokens.shape == (2, 16, 32) and maps[0].shape == (2, 32, 4, 4)
    assert enc.interpolation == "bilinear"


def test_prefix_tokens_can_be_kept():
    tokens, _ = TimmEncoder(_config(keep_prefix_tokens=True))(torch.rand(1, 3, 32, 32))
    assert tokens.shape == (1, 17, 32)


def test_map_layers_pick_blocks_negative_from_the_end():
    enc = TimmEncoder(_config(map_layers=[-1, 0]))
    x = torch.rand(1, 3, 32, 32)
    _, maps = enc(x)
    _, expected = enc.backbone.forward_intermediates((x - enc.mean) / enc.std, indices=[0, 1])
    assert len(maps) == 2 and all(torch.equal(a, b) for a, b in zip(maps, expected, strict=True))
    with pytest.raises(ValueError, match=r"map_layers: \[2\] out of range; timm vit_tiny_patch16_224 has 2"):
        TimmEncoder(_config(map_layers=[2]))
    with pytest.raises(ValueError, match="names a layer twice"):
        TimmEncoder(_config(map_layers=[1, -1]))
    with pytest.raises(ValidationError, match="either num_maps or map_layers"):
        _config(map_layers=[0], num_maps=1)


def test_cnn_backbone_gives_multiscale_maps():
    enc = TimmEncoder(TimmEncoderConfig(name="timm", model_name="resnet18", image_size=64, num_maps=3))
    tokens, maps = enc(torch.rand(1, 3, 64, 64))
    assert enc.map_channels == [128, 256, 512] and [m.shape[1] for m in maps] == [128, 256, 512]
    assert tokens.shape == (1, 4, 512)


def test_swin_maps_are_channels_first_and_tokens_follow_the_last_stage():
    enc = TimmEncoder(TimmEncoderConfig(name="timm", **SWIN, map_layers=[0, 1, 2, 3])).eval()  # no drop-path
    x = torch.rand(2, 3, 64, 64)
    tokens, maps = enc(x)
    assert enc.map_channels == [16, 32, 64, 128]
    assert [tuple(m.shape) for m in maps] == [(2, 16, 16, 16), (2, 32, 8, 8), (2, 64, 4, 4), (2, 128, 2, 2)]
    # Swin's features are channels-last: tokens are its normed last stage, one per position.
    features = enc.backbone.forward_features((x - enc.mean) / enc.std)
    assert features.shape == (2, 2, 2, 128) and torch.equal(tokens, features.flatten(1, 2))


@pytest.mark.parametrize("suffix", [".safetensors", ".pth", ".bin"])
def test_local_weights_file_loads(tmp_path, suffix):
    source = _source_vit()
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        save_file(source.state_dict(), str(path))
    else:
        torch.save({"state_dict": source.state_dict()}, path)
    enc = TimmEncoder(_config(pretrained=str(path)))
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(enc(x)[0], source.forward_features((x - enc.mean) / enc.std)[:, 1:])


def test_classifier_weights_in_a_checkpoint_are_not_a_misfit(tmp_path):
    source = timm.create_model(VIT["model_name"], num_classes=10, img_size=32, **VIT["model_kwargs"])
    save_file(source.state_dict(), str(tmp_path / "w.safetensors"))
    enc = TimmEncoder(_config(pretrained=str(tmp_path / "w.safetensors")))
    assert not enc.load_report and torch.equal(enc.backbone.cls_token, source.cls_token)


def test_weights_that_do_not_fit_name_the_keys(tmp_path):
    state = _source_vit().state_dict()
    state["extra.weight"] = torch.zeros(1)
    state["cls_token"] = torch.zeros(1, 1, 7)
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match=r"unexpected \['extra.weight'\].*cls_token: \(1, 1, 7\) vs \(1, 1, 32\)"):
        TimmEncoder(_config(pretrained=str(tmp_path / "bad.safetensors")))
    with pytest.raises(FileNotFoundError, match=r"missing\.safetensors: encoder weights file not found"):
        TimmEncoder(_config(pretrained=str(tmp_path / "missing.safetensors")))


def test_partial_load_must_be_asked_for_and_is_reported(tmp_path, caplog):
    source = _source_vit()
    state = source.state_dict()
    del state["pos_embed"]
    state["cls_token"] = torch.zeros(1, 1, 7)
    state["extra.weight"] = torch.zeros(1)
    save_file(state, str(tmp_path / "part.safetensors"))
    with caplog.at_level(logging.WARNING):
        enc = TimmEncoder(_config(pretrained=str(tmp_path / "part.safetensors"), strict_load=False))
    report = enc.load_report
    assert report.missing == ["pos_embed"] and report.unexpected == ["extra.weight"]
    assert report.mismatched == ["cls_token: (1, 1, 7) vs (1, 1, 32)"]
    assert "loaded partly" in caplog.text and "pos_embed" in caplog.text
    assert torch.equal(enc.backbone.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)


def test_multispectral_stem_is_adapted_from_rgb_weights(tmp_path):
    source = _source_vit()
    save_file(source.state_dict(), str(tmp_path / "rgb.safetensors"))
    bands = 13
    config = _config(pretrained=str(tmp_path / "rgb.safetensors"), in_chans=bands, mean=[0.5] * bands,
                     std=[0.2] * bands)
    assert config.stem_adaptation == "repeat"
    enc = TimmEncoder(config)
    weight = enc.backbone.patch_embed.proj.weight
    assert weight.shape[1] == bands and enc.stem_adapted.startswith("patch_embed.proj.weight: 3 -> 13")
    assert torch.equal(weight, adapt_input_conv(bands, source.patch_embed.proj.weight))
    # band c reuses RGB filter c % 3, scaled by 3/13
    assert torch.allclose(weight[:, 4], source.patch_embed.proj.weight[:, 1] * 3 / bands)
    tokens, _ = enc(torch.rand(1, bands, 32, 32))
    assert tokens.shape == (1, 16, 32)
    with pytest.raises(ValueError, match=r"patch_embed.proj.weight: \(32, 3, 8, 8\) vs \(32, 13, 8, 8\)"):
        TimmEncoder(config.model_copy(update={"stem_adaptation": "none"}))


def test_band_statistics_must_match_in_chans():
    with pytest.raises(ValidationError, match="mean has 3 values but in_chans is 13; give one per band"):
        _config(in_chans=13)
    with pytest.raises(ValidationError, match="std has 2 values but in_chans is 4"):
        _config(in_chans=4, mean=[0.5] * 4, std=[0.2, 0.2])
    with pytest.raises(ValidationError, match="interpolation"):
        _config(interpolation="lanczos")


def test_frozen_encoder_has_no_trainable_parameters_and_checks_image_size():
    enc = TimmEncoder(_config(freeze=True))
    assert not any(p.requires_grad for p in enc.parameters())
    assert not enc.weights_from_source  # random weights: nothing to fetch again, so they are saved
    with pytest.raises(ValueError, match="expects 3-band 32x32 images"):
        enc(torch.rand(1, 3, 64, 64))


def test_trainable_blocks_train_the_last_blocks_and_final_norm(tmp_path):
    save_file(_source_vit().state_dict(), str(tmp_path / "w.safetensors"))
    enc = TimmEncoder(_config(pretrained=str(tmp_path / "w.safetensors"), trainable_blocks=1))
    trainable = {n for n, p in enc.backbone.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("blocks.1.", "norm.")) for n in trainable)
    assert {"norm.weight", "blocks.1.attn.qkv.weight"} <= trainable
    assert enc.weights_from_source  # frozen blocks come from the weights file again
    tokens, _ = enc(torch.rand(1, 3, 32, 32))
    tokens.square().mean().backward()
    assert all(p.grad is not None for p in enc.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="trainable_blocks: 3, but timm vit_tiny_patch16_224 has 2 blocks"):
        TimmEncoder(_config(trainable_blocks=3))


def test_eva_giant_assembles_on_meta_at_full_size():
    config = TimmEncoderConfig(name="timm", model_name="eva_giant_patch14_224", image_size=224, trainable_blocks=2,
                               keep_prefix_tokens=True)
    with torch.device("meta"):
        enc = TimmEncoder(config)
        reference = timm.create_model("eva_giant_patch14_224")
    count = sum(p.numel() for p in enc.parameters())
    assert count == pytest.approx(sum(p.numel() for p in reference.parameters()), rel=0.02)
    assert 0.98e9 < count < 1.03e9
    assert len(enc.backbone.blocks) == 40 and enc.out_dim == 1408
    trainable = {n.split(".")[1] for n, p in enc.backbone.named_parameters() if p.requires_grad}
    assert trainable == {"38", "39"}  # EVA's final norm is an Identity (timm's fc_norm, pruned: unused)
    tokens, maps = enc(torch.empty(2, 3, 224, 224, device="meta"))
    assert tokens.shape == (2, 257, 1408) and maps[0].shape == (2, 1408, 16, 16)
