"""The full-size seed recipes against the parameter counts their authors publish (model cards and papers),
not against the library that builds them; assembled on the meta device (no weights, no memory).

- EVA-ViT-g/14: "1.0B" (EVA-CLIP paper, Table 1: EVA-CLIP-g image encoder 1.0B); BLIP-2 drops its last
  block (39 of 40), which is still 1.0B to two digits.
- Q-Former: "188M" trainable parameters (BLIP-2 paper, Table 1 and section 3), with its word/position
  embeddings and query tokens as released, plus the projection to the LLM.
- Vicuna-7B (Llama-2-7B architecture): 6.74B (Llama 2 model card: 6,738,415,616).
- FlanT5-XL: 2.85B (google/flan-t5-xl model card)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rsforge.core.model import RSForgeModel
from rsforge.core.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = {"eva_vit_g": 1.0e9, "qformer": 188e6, "vicuna_7b": 6.74e9, "flan_t5_xl": 2.85e9}
# Published numbers have 2-3 significant digits: a count within half a unit of the last digit matches.
TOLERANCE = {"eva_vit_g": 0.05e9, "qformer": 1e6, "vicuna_7b": 0.005e9, "flan_t5_xl": 0.005e9}


def _counts(recipe: str, plugins) -> dict[str, int]:
    model = RSForgeModel.from_recipe(load_recipe(ROOT / "recipes" / recipe, plugins.registry), plugins,
                                     device="meta")
    return {name: total for _, name, total, _ in model.parameter_counts()}


@pytest.mark.parametrize(("recipe", "parts"), [
    ("instructblip-scst.yaml", {"timm": "eva_vit_g", "qformer": "qformer", "hf_seq2seq_lm": "flan_t5_xl"}),
    ("deltavlm.yaml", {"timm": "eva_vit_g", "qformer": "qformer", "hf_causal_lm": "vicuna_7b"}),
])
def test_full_size_parts_have_the_published_sizes(recipe, parts, plugins):
    counts = _counts(recipe, plugins)
    for part, published in parts.items():
        assert abs(counts[part] - PUBLISHED[published]) <= TOLERANCE[published], (recipe, part, counts[part])
