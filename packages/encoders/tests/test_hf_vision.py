import json
import logging

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import save_file
from transformers import (
    CLIPConfig,
    CLIPModel,
    CLIPVisionConfig,
    CLIPVisionModel,
    Dinov2Config,
    Dinov2Model,
    SiglipVisionConfig,
    SiglipVisionModel,
)

from rsforge.encoders.configs import HFVisionConfig
from rsforge.encoders.hf_vision import HFVisionEncoder

TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
        "image_size": 32, "patch_size": 8}
TOWERS = {"clip": (CLIPVisionConfig, CLIPVisionModel, 1), "siglip": (SiglipVisionConfig, SiglipVisionModel, 0),
          "dinov2": (Dinov2Config, Dinov2Model, 1)}
# what feeds only outputs the encoder never reads: frozen, so DDP never waits for their gradients
UNUSED = {"clip": "post_layernorm.", "siglip": "head.", "dinov2": "embeddings.mask_token"}


def _save(tmp_path, kind: str, **extra):
    config_cls, model_cls, _ = TOWERS[kind]
    torch.manual_seed(0)
    model = model_cls(config_cls(**{**TINY, **extra})).eval()
    model.save_pretrained(tmp_path)
    return model


def _encoder(**fields) -> HFVisionEncoder:
    return HFVisionEncoder(HFVisionConfig(name="hf_vision", image_size=32, **fields)).eval()


@pytest.mark.parametrize("kind", sorted(TOWERS))
def test_tower_from_a_directory_gives_the_source_outputs(tmp_path, kind):
    source = _save(tmp_path, kind)
    enc = _encoder(pretrained=str(tmp_path), map_layers=[0, -1])
    x = torch.rand(2, 3, 32, 32)
    tokens, maps = enc(x)
    with torch.no_grad():
        out = source(pixel_values=(x - enc.mean) / enc.std, output_hidden_states=True)
    prefix = TOWERS[kind][2]  # class token of CLIP and DINOv2 is dropped; SigLIP has none
    assert tokens.shape == (2, 16, 32) and torch.equal(tokens, out.last_hidden_state[:, prefix:])
    assert [tuple(m.shape) for m in maps] == [(2, 32, 4, 4)] * 2 and enc.map_channels == [32, 32]
    grid = out.hidden_states[1][:, prefix:].transpose(1, 2).reshape(2, 32, 4, 4)
    assert torch.equal(maps[0], grid)
    assert not enc.load_report
    frozen = [n for n, p in enc.tower.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith(UNUSED[kind]) for n in frozen)
    assert enc.weights_from_source  # those few frozen weights come from the directory again


def test_class_token_can_be_kept(tmp_path):
    _save(tmp_path, "clip")
    tokens, _ = _encoder(pretrained=str(tmp_path), keep_prefix_tokens=True)(torch.rand(1, 3, 32, 32))
    assert tokens.shape == (1, 17, 32)


def test_vision_tower_of_a_full_clip_directory(tmp_path):
    torch.manual_seed(0)
    text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
            "vocab_size": 64, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1}
    full = CLIPModel(CLIPConfig(vision_config=TINY, text_config=text, projection_dim=16)).eval()
    full.save_pretrained(tmp_path)
    enc = _encoder(pretrained=str(tmp_path))
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        expected = full.vision_model(pixel_values=(x - enc.mean) / enc.std).last_hidden_state[:, 1:]
    assert torch.equal(enc(x)[0], expected) and not enc.load_report  # text-tower keys are expected left-overs


def test_mean_and_std_come_from_the_image_processor_config(tmp_path, caplog):
    _save(tmp_path, "clip")
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(
        {"image_mean": [0.1, 0.2, 0.3], "image_std": [0.4, 0.5, 0.6], "resample": 3}))
    with caplog.at_level(logging.WARNING):
        enc = _encoder(pretrained=str(tmp_path))
    assert enc.mean.flatten().tolist() == pytest.approx([0.1, 0.2, 0.3])
    assert enc.std.flatten().tolist() == pytest.approx([0.4, 0.5, 0.6])
    assert "bicubic" in caplog.text and enc.interpolation == "bilinear"
    mine = _encoder(pretrained=str(tmp_path), mean=[0.5] * 3, std=[0.25] * 3, interpolation="bicubic")
    assert mine.mean.flatten().tolist() == [0.5] * 3 and mine.interpolation == "bicubic"
    (tmp_path / "preprocessor_config.json").unlink()
    assert _encoder(pretrained=str(tmp_path)).mean.flatten().tolist() == pytest.approx([0.485, 0.456, 0.406])


def test_frozen_pretrained_tower_is_marked_as_from_source(tmp_path):
    _save(tmp_path, "dinov2")
    enc = _encoder(pretrained=str(tmp_path), freeze=True)
    assert enc.weights_from_source and not any(p.requires_grad for p in enc.parameters())
    random = _encoder(config={"model_type": "dinov2", **TINY}, freeze=True)
    assert not random.weights_from_source


@pytest.mark.parametrize("kind", ["clip", "siglip", "dinov2"])
def test_trainable_blocks_and_every_trainable_parameter_gets_a_gradient(tmp_path, kind):
    _save(tmp_path, kind)
    enc = _encoder(pretrained=str(tmp_path), trainable_blocks=1).train()
    layers = "encoder.layer.1." if kind == "dinov2" else "encoder.layers.1."
    trainable = [n for n, p in enc.tower.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith((layers, "post_layernorm.", "layernorm.")) for n in trainable)
    assert enc.weights_from_source
    tokens, maps = enc(torch.rand(2, 3, 32, 32))
    (tokens.square().mean() + maps[0].mean()).backward()
    # parameters feeding only the pooled output / mask token stay frozen: DDP needs every gradient
    assert all(p.grad is not None for p in enc.parameters() if p.requires_grad)
    full = _encoder(pretrained=str(tmp_path)).train()
    full(torch.rand(1, 3, 32, 32))[0].square().mean().backward()
    assert all(p.grad is not None for p in full.parameters() if p.requires_grad)


def test_other_image_sizes_interpolate_position_embeddings(tmp_path):
    _save(tmp_path, "clip")
    tokens, maps = HFVisionEncoder(HFVisionConfig(name="hf_vision", image_size=48, pretrained=str(tmp_path)))(
        torch.rand(1, 3, 48, 48))
    assert tokens.shape == (1, 36, 32) and maps[0].shape == (1, 32, 6, 6)
    with pytest.raises(ValueError, match="image_size: 36 is not a multiple of the patch size 8"):
        HFVisionEncoder(HFVisionConfig(name="hf_vision", image_size=36, pretrained=str(tmp_path)))


def test_weights_file_into_a_config_and_misfits_name_the_keys(tmp_path, caplog):
    source = _save(tmp_path, "siglip")
    state = source.state_dict()
    config = {"model_type": "siglip_vision_model", **TINY}
    save_file(state, str(tmp_path / "w.safetensors"))
    enc = _encoder(pretrained=str(tmp_path / "w.safetensors"), config=config)
    assert torch.equal(enc.tower.embeddings.patch_embedding.weight, source.embeddings.patch_embedding.weight)
    state["embeddings.position_embedding.weight"] = torch.zeros(5, 32)
    state["extra"] = torch.zeros(1)
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match=r"unexpected \['extra'\].*position_embedding.weight: \(5, 32\) vs \(16, 32\)"):
        _encoder(pretrained=str(tmp_path / "bad.safetensors"), config=config)
    with caplog.at_level(logging.WARNING):
        partial = _encoder(pretrained=str(tmp_path / "bad.safetensors"), config=config, strict_load=False)
    assert partial.load_report.unexpected == ["extra"] and "loaded partly" in caplog.text
    with pytest.raises(FileNotFoundError, match=r"nothing\.safetensors: encoder weights file not found"):
        _encoder(pretrained=str(tmp_path / "nothing.safetensors"), config=config)


def test_directory_that_does_not_fit_names_the_keys(tmp_path):
    _save(tmp_path / "a", "clip")
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    config["intermediate_size"] = 48
    (tmp_path / "a" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"does not fit CLIPVisionModel: .*shape mismatch \['encoder.layers.0.mlp"):
        _encoder(pretrained=str(tmp_path / "a"))
    assert _encoder(pretrained=str(tmp_path / "a"), strict_load=False).load_report.mismatched
    with pytest.raises(FileNotFoundError, match=r"nowhere/config.json not found"):
        _encoder(pretrained=str(tmp_path / "nowhere"))


def test_multispectral_tower_adapts_the_patch_embedding(tmp_path):
    source = _save(tmp_path, "dinov2")
    bands = 13
    enc = _encoder(pretrained=str(tmp_path), in_chans=bands, mean=[0.4] * bands, std=[0.2] * bands)
    weight = enc.tower.embeddings.patch_embeddings.projection.weight
    assert weight.shape[1] == bands and enc.stem_adapted.endswith("(repeat, x3/13)")
    assert torch.allclose(weight[:, 3], source.embeddings.patch_embeddings.projection.weight[:, 0] * 3 / bands)
    assert enc(torch.rand(1, bands, 32, 32))[0].shape == (1, 16, 32)
    with pytest.raises(ValueError, match=r"mean: .*preprocessor_config.json gives 3 values but in_chans is 13"):
        (tmp_path / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.1] * 3,
                                                                       "image_std": [0.2] * 3}))
        _encoder(pretrained=str(tmp_path), in_chans=bands)
    with pytest.raises(ValueError, match=r"projection.weight: \(32, 3, 8, 8\) vs \(32, 13, 8, 8\)"):
        _encoder(pretrained=str(tmp_path), in_chans=bands, mean=[0.4] * bands, std=[0.2] * bands,
                 stem_adaptation="none")


def test_config_errors_name_the_field():
    with pytest.raises(ValidationError, match="pretrained or config"):
        HFVisionConfig(name="hf_vision")
    with pytest.raises(ValidationError, match=r"config\.model_type: missing"):
        HFVisionConfig(name="hf_vision", config={"hidden_size": 32})
    with pytest.raises(ValidationError, match="config: needed to build the tower"):
        HFVisionConfig(name="hf_vision", pretrained="w.safetensors")


def test_pretrained_directory_assembles_on_meta_without_reading_weights(tmp_path):
    _save(tmp_path, "clip")
    with torch.device("meta"):
        enc = HFVisionEncoder(HFVisionConfig(name="hf_vision", image_size=32, pretrained=str(tmp_path), freeze=True))
    assert next(enc.parameters()).is_meta and enc.weights_from_source
    assert enc(torch.empty(1, 3, 32, 32, device="meta"))[0].shape == (1, 16, 32)
