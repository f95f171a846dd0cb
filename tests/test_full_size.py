"""Full-size recipes assemble on the meta device (no weights, no memory) with real parameter counts."""

from __future__ import annotations

import timm
import torch

from rsforge.core.model import RSForgeModel
from rsforge.core.plugins import PluginManager
from rsforge.core.recipe import parse_recipe

LLAMA2_7B = {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
             "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32000,
             "max_position_embeddings": 4096}


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_eva_g_and_llama2_7b_assemble_on_meta_with_real_parameter_counts():
    plugins = PluginManager()
    raw = {"name": "deltavlm-shape",
           "encoder": {"name": "timm", "model_name": "eva_giant_patch14_224", "image_size": 224},
           "bridges": [{"name": "mlp_projector"}],
           "decoder": {"name": "hf_causal_lm", "tokenizer": "word_level", "config": LLAMA2_7B}}
    model = RSForgeModel.from_recipe(parse_recipe(raw, plugins.registry), plugins, device="meta")
    decoder = _count(model.decoder)
    assert abs(decoder - 6.74e9) / 6.74e9 < 0.02, decoder
    with torch.device("meta"):
        reference = _count(timm.create_model("eva_giant_patch14_224", num_classes=0))
    encoder = _count(model.encoder)
    assert abs(encoder - reference) / reference < 0.02, (encoder, reference)
    assert abs(encoder - 1.0e9) / 1.0e9 < 0.02, encoder
