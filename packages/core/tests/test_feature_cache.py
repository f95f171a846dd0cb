"""The on-disk feature cache of a frozen encoder: keys, hits, exactness, refusal, concurrent writers."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest
import torch
from PIL import Image

from rsforge.core.assembler import assemble
from rsforge.core.data.images import load_image
from rsforge.core.feature_cache import FeatureCache, feeding_features
from rsforge.core.recipe import parse_recipe

from .toy_parts import toy_recipe


def _model(toy_plugins, frozen=True, seed=0):
    torch.manual_seed(seed)
    model = assemble(parse_recipe(toy_recipe(), toy_plugins.registry), toy_plugins)
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


def test_cached_features_equal_the_encoder_and_hit_on_the_second_pass(tmp_path, toy_plugins):
    model = _model(toy_plugins)
    paths = _images(tmp_path)
    cache = FeatureCache(tmp_path / "cache", model)
    tokens, maps = cache.features([[p] for p in paths])
    assert (cache.hits, cache.misses) == (0, 3)
    images = torch.stack([load_image(p, model.image_size) for p in paths])
    with torch.no_grad():
        want_tokens, want_maps = model.encoder(images)
    torch.testing.assert_close(tokens, want_tokens)
    torch.testing.assert_close(maps[0], want_maps[0])
    # A fresh cache object (another epoch, another worker) reads them back from disk.
    again = FeatureCache(tmp_path / "cache", model)
    tokens2, _ = again.features([[p] for p in paths])
    assert (again.hits, again.misses) == (3, 0)
    torch.testing.assert_close(tokens2, tokens)
    assert len(list(cache.directory.glob("*.safetensors"))) == 3
    assert not list(cache.directory.glob(".*"))  # no temporary file left behind


def test_the_key_covers_encoder_weights_and_image_content(tmp_path, toy_plugins):
    paths = _images(tmp_path, 1)
    first = FeatureCache(tmp_path / "cache", _model(toy_plugins, seed=0))
    other_weights = FeatureCache(tmp_path / "cache", _model(toy_plugins, seed=1))
    assert first.directory != other_weights.directory
    first.features([paths])
    Image.fromarray(np.zeros((20, 20, 3), dtype=np.uint8)).save(paths[0])  # same name, new content
    fresh = FeatureCache(tmp_path / "cache", _model(toy_plugins, seed=0))
    fresh.features([paths])
    assert fresh.misses == 1


def test_a_trainable_encoder_is_refused(tmp_path, toy_plugins):
    with pytest.raises(ValueError, match=r"train\.feature_cache: encoder 'toy' has \d+ trainable parameters"):
        FeatureCache(tmp_path, _model(toy_plugins, frozen=False))


def test_feeding_features_replaces_the_encoder_only_inside_the_block(tmp_path, toy_plugins):
    model = _model(toy_plugins)
    paths = _images(tmp_path, 2)
    cache = FeatureCache(tmp_path / "cache", model)
    images = torch.stack([load_image(p, model.image_size) for p in paths])[:, None]  # (B=2, T=1, ...)
    batch = {"images": torch.zeros_like(images), "features": cache.features([[p] for p in paths])}
    with torch.no_grad(), feeding_features(model, batch):
        fed = model.encode(batch["images"]).tokens
    with torch.no_grad():
        real = model.encode(images).tokens
        blank = model.encode(batch["images"]).tokens  # the block is over: the encoder encodes again
    torch.testing.assert_close(fed, real)
    assert not torch.allclose(blank, real)
    assert set(model.state_dict()) == set(_model(toy_plugins).state_dict())
    with pytest.raises(ValueError, match="cached features are for 2 images, the batch has 1"), \
            feeding_features(model, batch):
        model.encode(batch["images"][:1])


def _fill(args):
    root, paths = args
    from rsforge.core.plugins import PluginManager

    from .toy_parts import ToyPlugin

    pm = PluginManager(entry_points_source=[])
    pm.register(ToyPlugin(), name="toy", distribution="toy-dist")
    cache = FeatureCache(root, _model(pm))
    return float(cache.features([[p] for p in paths])[0].sum())


def test_two_processes_filling_the_same_cache_do_not_corrupt_it(tmp_path):
    paths = _images(tmp_path, 6)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        sums = pool.map(_fill, [(str(tmp_path / "cache"), paths)] * 2)
    assert sums[0] == pytest.approx(sums[1])
    assert _fill((str(tmp_path / "cache"), paths)) == pytest.approx(sums[0])  # every entry loads whole
