"""The tiny change-mask recipe trains with the kernel's pure-torch steps (no Ray) to F1 >= 0.8 on
held-out synthetic pairs, and its saved model reloads to the same predictions."""

from __future__ import annotations

import pytest
import torch

from rsforge.core.model import RSForgeModel
from rsforge.core.plugins import PluginManager

from .mask_model import mask_f1, pairs, preload, tiny_mask_recipe, train_tiny_mask_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    directory = tmp_path_factory.mktemp("mask")
    return directory, train_tiny_mask_model(directory)


def test_tiny_mask_model_reaches_f1_on_held_out_pairs(trained):
    directory, model_dir = trained
    plugins = PluginManager()
    model = RSForgeModel.from_pretrained(model_dir, plugins=plugins)
    assert model.decoder is None and model.num_images == 2
    test = preload(pairs(tiny_mask_recipe(directory / "synth", plugins), plugins, "test"), model.image_size)
    metrics = mask_f1(model, test)
    assert metrics["f1"] >= 0.8, metrics


def test_saved_mask_model_predicts_like_a_fresh_load(trained):
    _, model_dir = trained
    plugins = PluginManager()
    a = RSForgeModel.from_pretrained(model_dir, plugins=plugins)
    b = RSForgeModel.from_pretrained(model_dir, plugins=plugins)
    images = torch.rand(2, 2, 3, a.image_size, a.image_size, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.mask_logits(images), b.mask_logits(images))
    assert a.predict_mask(images[:, 0], images[:, 1]).shape == (2, a.image_size, a.image_size)
