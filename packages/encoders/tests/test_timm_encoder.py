import pytest
import timm
import torch
from safetensors.torch import save_file

from rsforge.encoders.configs import TimmEncoderConfig
from rsforge.encoders.timm_encoder import TimmEncoder

VIT = {"model_name": "vit_tiny_patch16_224", "image_size": 32,
       "model_kwargs": {"patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}}


def _config(**extra) -> TimmEncoderConfig:
    return TimmEncoderConfig(name="timm", **{**VIT, **extra})


def test_vit_tokens_are_patches_and_maps_are_grids():
    enc = TimmEncoder(_config(num_maps=1))
    tokens, maps = enc(torch.rand(2, 3, 32, 32))
    assert tokens.shape == (2, 16, 32) and maps[0].shape == (2, 32, 4, 4)


def test_cnn_backbone_gives_multiscale_maps():
    enc = TimmEncoder(TimmEncoderConfig(name="timm", model_name="resnet18", image_size=64, num_maps=3))
    tokens, maps = enc(torch.rand(1, 3, 64, 64))
    assert enc.map_channels == [128, 256, 512] and [m.shape[1] for m in maps] == [128, 256, 512]
    assert tokens.shape == (1, 4, 512)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_weights_file_loads(tmp_path, suffix):
    torch.manual_seed(3)
    source = timm.create_model(VIT["model_name"], num_classes=0, img_size=32, **VIT["model_kwargs"])
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        save_file(source.state_dict(), str(path))
    else:
        torch.save(source.state_dict(), path)
    enc = TimmEncoder(_config(pretrained=str(path)))
    assert torch.equal(enc.backbone.pos_embed, source.pos_embed)


def test_weights_that_do_not_fit_name_the_keys(tmp_path):
    state = timm.create_model(VIT["model_name"], num_classes=0, img_size=32, **VIT["model_kwargs"]).state_dict()
    state["extra.weight"] = torch.zeros(1)
    state["cls_token"] = torch.zeros(1, 1, 7)
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match=r"unexpected \['extra.weight'\].*cls_token: \(1, 1, 7\) vs \(1, 1, 32\)"):
        TimmEncoder(_config(pretrained=str(tmp_path / "bad.safetensors")))
    with pytest.raises(FileNotFoundError, match=r"missing\.safetensors: encoder weights file not found"):
        TimmEncoder(_config(pretrained=str(tmp_path / "missing.safetensors")))


def test_frozen_encoder_has_no_trainable_parameters_and_checks_image_size():
    enc = TimmEncoder(_config(freeze=True))
    assert not any(p.requires_grad for p in enc.parameters())
    with pytest.raises(ValueError, match="expects 32x32 images"):
        enc(torch.rand(1, 3, 64, 64))
