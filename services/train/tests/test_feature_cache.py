"""The on-disk feature cache of a frozen encoder: keys, hits, exactness, refusal, concurrent writers."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest
import torch
from PIL import Image

from rsforge.core.model import RSForgeModel
from rsforge.core.plugins import PluginManager
from rsforge.core.recipe import parse_recipe
from rsforge.core.sample import Turn
from rsforge.datasets.images import load_image
from rsforge.train.feature_cache import FeatureCache

RECIPE = {"name": "cached", "bridges": [{"name": "mlp_projector", "out_dim": 6}],
          "encoder": {"name": "timm", "model_name": "vit_tiny_patch16_224", "image_size": 16,
                      "model_kwargs": {"patch_size": 8, "embed_dim": 16, "depth": 1, "num_heads": 2}}}


@pytest.fixture(scope="module")
def plugins():
    return PluginManager()


def _model(plugins, frozen=True, seed=0):
    torch.manual_seed(seed)
    model = RSForgeModel.from_recipe(parse_recipe(RECIPE, plugins.registry), plugins)
    if frozen:
        model.encoder.requires_grad_(False)
    return model


def _images(tmp_path, count=3):
    paths = []
    for i in range(count):
        pixels = np.random.default_rng(i).integers(0, 255, (20, 20, 3), dtype=np.uint8)
        path = tmp_path / f"img{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
    return paths


def test_cached_features_equal_the_encoder_and_hit_on_the_second_pass(tmp_path, plugins):
    model = _model(plugins)
    paths = _images(tmp_path)
    cache = FeatureCache(tmp_path / "cache", model)
    cached = cache.features([[p] for p in paths])
    assert (cache.hits, cache.misses) == (0, 3)
    images = torch.stack([load_image(p, model.image_size) for p in paths])
    with torch.no_grad():
        want = model.encode(images[:, None])
    torch.testing.assert_close(cached.tokens, want.tokens)
    torch.testing.assert_close(cached.maps[0], want.maps[0])
    # A fresh cache object (another epoch, another worker) reads them back from disk.
    again = FeatureCache(tmp_path / "cache", model)
    tokens2 = again.features([[p] for p in paths]).tokens
    assert (again.hits, again.misses) == (3, 0)
    torch.testing.assert_close(tokens2, cached.tokens)
    assert len(list(cache.directory.glob("*.safetensors"))) == 3
    assert not list(cache.directory.glob(".*"))  # no temporary file left behind


def test_the_key_covers_encoder_weights_and_image_content(tmp_path, plugins):
    paths = _images(tmp_path, 1)
    first = FeatureCache(tmp_path / "cache", _model(plugins, seed=0))
    other_weights = FeatureCache(tmp_path / "cache", _model(plugins, seed=1))
    assert first.directory != other_weights.directory
    first.features([paths])
    Image.fromarray(np.zeros((20, 20, 3), dtype=np.uint8)).save(paths[0])  # same name, new content
    fresh = FeatureCache(tmp_path / "cache", _model(plugins, seed=0))
    fresh.features([paths])
    assert fresh.misses == 1


def test_a_trainable_encoder_is_refused(tmp_path, plugins):
    with pytest.raises(ValueError, match=r"train\.feature_cache: encoder 'timm' has \d+ trainable parameters"):
        FeatureCache(tmp_path, _model(plugins, frozen=False))


def test_cached_features_are_a_model_input_in_place_of_the_images(tmp_path, plugins):
    model = _model(plugins)
    paths = _images(tmp_path, 2)
    cache = FeatureCache(tmp_path / "cache", model)
    images = torch.stack([load_image(p, model.image_size) for p in paths])[:, None]  # (B=2, T=1, ...)
    features = cache.features([[p] for p in paths])
    prompts = [[Turn("user", "what changed")]] * 2
    with torch.no_grad():
        fed = model.decoder_input(torch.zeros_like(images), prompts, features)
        real = model.decoder_input(images, prompts)
    torch.testing.assert_close(fed, real)
    with pytest.raises(ValueError, match=r"precomputed features are for \(2, 1\) \(B, T\) images, the batch has "
                                         r"\(1, 1\)"):
        model.decoder_input(images[:1], prompts[:1], features)


def _fill(args):
    root, paths = args
    cache = FeatureCache(root, _model(PluginManager()))
    return float(cache.features([[p] for p in paths]).tokens.sum())


def test_two_processes_filling_the_same_cache_do_not_corrupt_it(tmp_path):
    paths = _images(tmp_path, 6)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        sums = pool.map(_fill, [(str(tmp_path / "cache"), paths)] * 2)
    assert sums[0] == pytest.approx(sums[1])
    assert _fill((str(tmp_path / "cache"), paths)) == pytest.approx(sums[0])  # every entry loads whole
