"""The assembler fills the token width of heads that read tokens, from the part they read, and
names both parts when a recipe's width disagrees."""

from __future__ import annotations

import pytest

from rsforge.core.errors import AssemblyError
from rsforge.core.model import RSForgeModel
from rsforge.core.recipe import parse_recipe

ENCODER = {"name": "timm", "model_name": "vit_tiny_patch16_224", "image_size": 32,
           "model_kwargs": {"patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}}


def _recipe(plugins, heads):
    raw = {"encoder": ENCODER, "bridges": [{"name": "difference", "out_dim": 24}], "heads": heads}
    return parse_recipe(raw, plugins.registry)


def test_token_heads_get_the_width_of_what_they_read(plugins):
    model = RSForgeModel.from_recipe(_recipe(plugins, [{"name": "token_mask"},
                                       {"name": "classifier", "num_classes": 3},
                                       {"name": "classifier", "num_classes": 3, "bridged": True}]), plugins)
    assert [h.in_dim for h in model.recipe.heads] == [24, 32, 24]  # bridged tokens, encoder tokens, bridged


def test_a_wrong_token_width_names_both_parts(plugins):
    with pytest.raises(AssemblyError, match=r"heads\[0\] \(token_mask\) expects in_dim=32, but "
                                            r"bridges\[0\] \(difference\) outputs 24"):
        RSForgeModel.from_recipe(_recipe(plugins, [{"name": "token_mask", "in_dim": 32}]), plugins, device="meta")
