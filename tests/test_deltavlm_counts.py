"""DeltaVLM and InstructBLIP-SCST at full size, assembled on the meta device (no weights, no memory):
every part's total and trainable parameter count against the published architectures, computed here
independently of the recipes.

Published numbers and what this checks against:
- EVA-ViT-g/14 (EVA-CLIP g, 1408 wide, 40 blocks): ~1.0B parameters. DeltaVLM trains its last 2 blocks.
  rsforge's timm encoder keeps timm's 40 blocks (LAVIS/DeltaVLM drop the 40th and use 39). timm's EVA-g
  has no norm on its tokens (its `norm` is an Identity; `fc_norm` normalises the pooled vector, which the
  encoder drops as it never reads it), so its tokens leave the last block un-normalised, as in LAVIS, where
  ln_vision follows; here the IDPM's input LayerNorm is that ln_vision. Trainable = the last 2 blocks.
- InstructBLIP's Q-Former (BERT-base: 12 layers, hidden 768, 12 heads, FFN 3072, cross-attention to the
  1408-d image tokens in every 2nd layer, vocabulary 30522 + [DEC] = 30523, 32 queries): the paper reports
  188M trainable parameters. That 188M is the Q-Former (185,660,160 with its word/position embeddings and the
  separate query/text feed-forwards) + 32 x 768 query tokens (24,576) + the 768 -> 4096 projection to
  Vicuna (3,149,824) = 188,834,560 in DeltaVLM; InstructBLIP also trains ln_vision (2 x 1408), and
  InstructBLIP-SCST projects to FlanT5-XL's 2048 instead (1,574,912).
- DeltaVLM's IDPM/CSRM on 1408-d tokens: two bias-free maps of D (W1, W3), two biased maps of F (W2, W4),
  the fusion Linear(3 x 1408 -> 1408), and ln_vision: 13,884,288.
- Vicuna-7B v1.5 = Llama-2-7B: 6,738,415,616 parameters, all frozen.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
import yaml
from transformers import InstructBlipQFormerConfig, InstructBlipQFormerModel

from rsforge.core.model import RSForgeModel
from rsforge.core.plugins import PluginManager
from rsforge.core.recipe import parse_recipe

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
EVA_WIDTH, LLM_WIDTH = 1408, 4096


def _count(module: torch.nn.Module, trainable: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable)


def _meta_model(name: str):
    plugins = PluginManager()
    recipe = parse_recipe(yaml.safe_load((RECIPES / f"{name}.yaml").read_text()), plugins.registry)
    return RSForgeModel.from_recipe(recipe, plugins, device="meta")


def _eva_giant() -> tuple[int, int]:
    """(parameters on the token path, one block) of timm's EVA-ViT-g/14: all but the pooled-vector norm."""
    with torch.device("meta"):
        eva = timm.create_model("eva_giant_patch14_224", num_classes=0)
    assert len(eva.blocks) == 40 and eva.embed_dim == EVA_WIDTH and _count(eva.norm) == 0
    return _count(eva) - _count(eva.fc_norm), _count(eva.blocks[-1])


def _instructblip_qformer() -> int:
    """InstructBLIP-Vicuna-7B's Q-Former, built from its official config numbers."""
    config = InstructBlipQFormerConfig(vocab_size=30523, hidden_size=768, num_hidden_layers=12,
                                       num_attention_heads=12, intermediate_size=3072, max_position_embeddings=512,
                                       cross_attention_frequency=2, encoder_hidden_size=EVA_WIDTH)
    with torch.device("meta"):
        return _count(InstructBlipQFormerModel(config))


QUERIES = 32 * 768
PROJECTION = 768 * LLM_WIDTH + LLM_WIDTH
LN_VISION = 2 * EVA_WIDTH
# Llama-2-7B: untied input/output embeddings + 32 x (attention 4 x 4096^2, SwiGLU 3 x 4096 x 11008, 2 norms)
# + the final norm.
VICUNA_7B = 2 * 32000 * 4096 + 32 * (4 * 4096**2 + 3 * 4096 * 11008 + 2 * 4096) + 4096


def test_deltavlm_part_counts_match_the_published_architecture():
    model = _meta_model("deltavlm")
    idpm, qformer = model.bridges

    eva_total, eva_block = _eva_giant()
    assert _count(model.encoder) == eva_total
    assert abs(eva_total - 1.01e9) / 1.01e9 < 0.01, eva_total
    assert _count(model.encoder, trainable=True) == 2 * eva_block  # 50.50M

    d = EVA_WIDTH
    csrm = 2 * d * d + 2 * (d * d + d) + (3 * d * d + d) + LN_VISION
    assert csrm == 13_884_288
    assert _count(idpm) == _count(idpm, trainable=True) == csrm
    assert idpm.out_dim == EVA_WIDTH and qformer.in_dim == EVA_WIDTH

    reference = _instructblip_qformer()
    assert reference == 185_660_160
    assert PROJECTION == 3_149_824
    assert _count(qformer) == _count(qformer, trainable=True) == reference + QUERIES + PROJECTION == 188_834_560
    assert qformer.out_dim == LLM_WIDTH and qformer.query_tokens.shape == (1, 32, 768)

    assert VICUNA_7B == 6_738_415_616
    assert _count(model.decoder) == VICUNA_7B and _count(model.decoder, trainable=True) == 0


def test_instructblip_scst_trains_only_the_qformer():
    model = _meta_model("instructblip-scst")
    (qformer,) = model.bridges
    assert _count(model.encoder, trainable=True) == 0 and _count(model.decoder, trainable=True) == 0
    # InstructBLIP-FlanT5-XL's trainable set: Q-Former + queries + projection to FlanT5's 2048 + ln_vision.
    assert _count(qformer, trainable=True) == _instructblip_qformer() + QUERIES + 768 * 2048 + 2048 + LN_VISION
    rewards = [r.name for r in model.recipe.rewards]
    assert rewards == ["cider_d", "length", "sde", "count_abs_error", "count_signed_error", "nkl", "varentropy"]
    assert [s.kind for s in model.recipe.train.stages] == ["sft", "scst"]
