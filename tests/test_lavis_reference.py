"""The LAVIS reference fixture: LAVIS 1.0.2's own EVA-ViT, Q-Former and blip2.py, loaded from its wheel at tiny size.

The first run downloads the wheel (pip, ~2 MB) into $RSFORGE_TEST_CACHE or ~/.cache/rsforge-tests.
"""

from __future__ import annotations

import re
import sys
from functools import partial

import pytest
import torch
from torch import nn

from .fixtures.lavis_reference import (
    eva_g_state_dict,
    eva_module,
    lavis_source,
    qformer_module,
    save_lavis_pth,
    tiny_blip2_checkpoint,
    tiny_qformer,
)

IMAGES = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def instructblip():
    return tiny_blip2_checkpoint("instructblip")


@pytest.fixture(scope="module")
def blip2():
    return tiny_blip2_checkpoint("blip2")


def test_modules_come_from_the_wheel_and_leave_sys_modules_alone():
    root = lavis_source()
    assert (root / "lavis" / "models" / "eva_vit.py").is_file()
    assert eva_module().__file__ == str(root / "lavis" / "models" / "eva_vit.py")
    assert qformer_module().__file__ == str(root / "lavis" / "models" / "blip2_models" / "Qformer.py")
    assert not any(name == "lavis" or name.startswith("lavis.") for name in sys.modules)
    real = sys.modules.get("transformers.modeling_utils")  # the shim Qformer.py sees is never registered
    assert real is None or real.__file__.endswith("modeling_utils.py")


def test_eva_vision_transformer_builds_and_runs_on_cpu():
    model = eva_module().VisionTransformer(
        img_size=28, patch_size=14, embed_dim=32, depth=2, num_heads=2, mlp_ratio=4.3637, qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6), use_mean_pooling=False).eval()
    with torch.no_grad():
        out = model(IMAGES)
    assert out.shape == (2, 1 + 4, 32)  # cls token + (28 / 14) ** 2 patches, no final norm
    assert torch.isfinite(out).all()
    keys = set(model.state_dict())
    assert {"cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.attn.q_bias", "blocks.0.attn.v_bias",
            "blocks.0.attn.qkv.weight", "blocks.1.mlp.fc2.bias"} <= keys
    assert "blocks.0.attn.qkv.bias" not in keys and not any(k.startswith("norm.") for k in keys)


def test_init_qformer_sets_the_lavis_fields():
    qformer, query_tokens = tiny_qformer(num_query_token=4, vision_width=40)
    config = qformer.config
    assert (config.encoder_width, config.add_cross_attention, config.cross_attention_freq, config.query_length) == (
        40, True, 2, 4)
    assert query_tokens.shape == (1, 4, 32)
    assert [layer.has_cross_attention for layer in qformer.bert.encoder.layer] == [True, False]
    assert qformer.bert.encoder.layer[0].crossattention.self.key.weight.shape == (32, 40)
    # transformers 4.25 tie_weights: the MLM decoder shares the word embeddings
    assert qformer.cls.predictions.decoder.weight is qformer.bert.embeddings.word_embeddings.weight


def test_instructblip_checkpoint(instructblip, tmp_path):
    state_dict, reference = instructblip
    for key in ["visual_encoder.blocks.0.attn.q_bias", "visual_encoder.blocks.0.attn.v_bias",
                "visual_encoder.blocks.1.attn.qkv.weight", "visual_encoder.patch_embed.proj.weight",
                "ln_vision.weight", "ln_vision.bias", "query_tokens", "llm_proj.weight", "llm_proj.bias",
                "Qformer.bert.embeddings.word_embeddings.weight", "Qformer.bert.embeddings.position_embeddings.weight",
                "Qformer.bert.embeddings.position_ids", "Qformer.bert.embeddings.LayerNorm.weight",
                "Qformer.bert.encoder.layer.0.crossattention.self.query.weight",
                "Qformer.bert.encoder.layer.0.crossattention.self.key.weight",
                "Qformer.bert.encoder.layer.1.intermediate.dense.weight",
                "Qformer.bert.encoder.layer.1.output_query.LayerNorm.bias"]:
        assert key in state_dict, key
    assert not any(k.startswith("Qformer.cls.") for k in state_dict)
    assert not any("layer.1.crossattention" in k for k in state_dict)
    # random everywhere: no LayerNorm at its default scale/shift, no zero bias
    assert not torch.allclose(state_dict["ln_vision.weight"], torch.ones(32))
    assert not torch.allclose(state_dict["visual_encoder.blocks.0.attn.v_bias"], torch.zeros(32))
    assert not torch.allclose(state_dict["Qformer.bert.encoder.layer.0.output_query.LayerNorm.bias"], torch.zeros(32))

    ids = torch.tensor([[1, 7, 9, 11, 2], [1, 5, 2, 0, 0]])  # [CLS] ... [SEP] [PAD] in a 64-token vocabulary
    mask = (ids != 0).long()
    out = reference(IMAGES, ids, mask)
    assert out.shape == (2, 4, 48) and torch.isfinite(out).all()
    assert not torch.allclose(out, reference(IMAGES, ids, torch.ones_like(mask)))  # the mask reaches the Q-Former
    assert reference.image_embeds(IMAGES).shape == (2, 5, 32)
    with pytest.raises(ValueError):
        reference(IMAGES)

    path = save_lavis_pth(state_dict, tmp_path / "instructblip.pth")
    loaded = torch.load(path, map_location="cpu")
    assert set(loaded) == {"model"} and loaded["model"].keys() == state_dict.keys()
    again, _ = tiny_blip2_checkpoint("instructblip")  # the same seed gives the same tensors
    assert all(torch.equal(again[k], v) for k, v in state_dict.items())


def test_blip2_checkpoint_has_the_lavis_blip2_key_set(blip2):
    state_dict, reference = blip2
    for key in ["visual_encoder.blocks.0.attn.q_bias", "ln_vision.weight", "query_tokens", "opt_proj.weight",
                "Qformer.bert.embeddings.LayerNorm.weight", "Qformer.bert.embeddings.position_ids",
                "Qformer.bert.encoder.layer.0.crossattention.self.query.weight",
                "Qformer.bert.encoder.layer.0.intermediate_query.dense.weight"]:
        assert key in state_dict, key
    # blip2_opt.py drops the text side: cls, word/position embeddings, layer.output / layer.intermediate
    for pattern in [r"^Qformer\.cls\.", r"word_embeddings", r"position_embeddings\.", r"layer\.\d+\.intermediate\.",
                    r"layer\.\d+\.output\.", r"^llm_proj"]:
        assert not any(re.search(pattern, k) for k in state_dict), pattern
    assert any(re.search(r"layer\.\d+\.attention\.output\.dense", k) for k in state_dict)
    out = reference(IMAGES)
    assert out.shape == (2, 4, 48) and torch.isfinite(out).all()


def test_trainable_only_drops_the_frozen_vision_encoder():
    state_dict, _ = tiny_blip2_checkpoint("instructblip", trainable_only=True)
    assert not any(k.startswith("visual_encoder.") for k in state_dict)
    assert {"ln_vision.weight", "query_tokens", "llm_proj.weight", "Qformer.bert.embeddings.position_ids"} <= set(
        state_dict)


def test_eva_g_state_dict_has_the_eva_vit_g_names(instructblip):
    eva = eva_g_state_dict(instructblip[0])
    assert "blocks.0.attn.q_bias" in eva and "pos_embed" in eva and not any("Qformer" in k for k in eva)
