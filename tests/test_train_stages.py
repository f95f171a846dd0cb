"""Training stages and the feature cache on the real tiny model, in pure torch (no Ray): what the
worker loop runs on each worker."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import yaml

from rsforge.core.model import RSForgeModel
from rsforge.core.recipe import StageConfig, parse_recipe
from rsforge.datasets.loading import load_split, training_texts
from rsforge.datasets.torch_dataset import SampleDataset, collate
from rsforge.train.feature_cache import FeatureCache
from rsforge.train.steps import build_optimizer, build_scheduler, objective_parameters, train_step

from .conftest import ROOT


@pytest.fixture(scope="module")
def data(plugins, tmp_path_factory):
    raw = yaml.safe_load((ROOT / "recipes" / "tiny.yaml").read_text())
    raw["data"].update(root=str(tmp_path_factory.mktemp("stages") / "data"), n=8)
    recipe = parse_recipe(raw, plugins.registry)
    samples = load_split(recipe, plugins, "train")
    return recipe.prepared(training_texts(samples)), samples


def _model(recipe, plugins, **train):
    recipe = recipe.model_copy(update={"train": recipe.train.model_copy(update=train)})
    torch.manual_seed(0)
    return RSForgeModel.from_recipe(recipe, plugins)


def _batch(model, samples, n=4):
    dataset = SampleDataset(samples[:n], model.image_size, model.interpolation)
    return collate([dataset[i] for i in range(len(dataset))])


def test_no_stages_means_one_sft_stage_of_train_epochs(data):
    from rsforge.train.worker_loop import stages_of

    recipe, _ = data
    assert stages_of(recipe) == [StageConfig(kind="sft", epochs=recipe.train.epochs)]
    staged = recipe.model_copy(update={"train": recipe.train.model_copy(update={"stages": [
        StageConfig(kind="sft", epochs=2), StageConfig(kind="mask", epochs=1, lr=1e-4)]})})
    assert [(s.kind, s.epochs, s.lr) for s in stages_of(staged)] == [("sft", 2, None), ("mask", 1, 1e-4)]


def test_mask_stage_trains_the_mask_path_and_leaves_the_decoder_alone(data, plugins):
    recipe, samples = data
    model = _model(recipe, plugins)
    batch = _batch(model, samples)
    reached = objective_parameters(model, batch)
    assert any(n.startswith("heads.0.") for n in reached)
    assert not any(n.startswith("decoder.") for n in reached)
    optimizer = build_optimizer(model, recipe.train, only=reached)
    scheduler = build_scheduler(optimizer, recipe.train, total_steps=2)
    decoder_before = {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith("decoder.")}
    head_before = model.heads[0].state_dict()
    head_before = {k: v.clone() for k, v in head_before.items()}
    losses = train_step(model, batch, optimizer, scheduler, grad_clip=1.0, kind="mask")
    assert losses["loss"] == pytest.approx(losses["mask_change_mask"] * recipe.heads[0].weight, rel=1e-5)
    assert losses["lm"] > 0  # still reported, not trained
    for name, param in model.named_parameters():
        if name in decoder_before:
            assert torch.equal(param, decoder_before[name]), name
    assert any(not torch.equal(v, model.heads[0].state_dict()[k]) for k, v in head_before.items())


def test_a_mask_stage_needs_masks(data, plugins):
    recipe, samples = data
    model = _model(recipe, plugins)
    batch = _batch(model, samples)
    batch = replace(batch, masks=None, mask_valid=torch.zeros_like(batch.mask_valid))
    with pytest.raises(ValueError, match="mask stage needs a mask head and training samples with masks"):
        objective_parameters(model, batch)


def test_sft_step_in_bf16_on_cpu(data, plugins):
    recipe, samples = data
    model = _model(recipe, plugins, precision="bf16")
    batch = _batch(model, samples)
    optimizer = build_optimizer(model, model.recipe.train)
    scheduler = build_scheduler(optimizer, model.recipe.train, total_steps=2)
    first = train_step(model, batch, optimizer, scheduler, grad_clip=1.0, precision="bf16")
    second = train_step(model, batch, optimizer, scheduler, grad_clip=1.0, precision="bf16")
    assert torch.isfinite(torch.tensor(first["loss"])) and second["loss"] < first["loss"]


def test_feature_cache_gives_the_same_training_losses_with_a_frozen_encoder(data, plugins, tmp_path):
    recipe, samples = data
    frozen = recipe.model_copy(update={"encoder": recipe.encoder.model_copy(update={"freeze": True})})
    with pytest.raises(ValueError, match=r"train\.feature_cache: encoder 'timm' has \d+ trainable parameters"):
        FeatureCache(tmp_path, _model(recipe, plugins))
    runs = []
    for cached in (False, True):
        model = _model(frozen, plugins)
        batch = _batch(model, samples)
        if cached:
            cache = FeatureCache(tmp_path / "cache", model)
            batch.features = cache.features([s.images for s in samples[:4]])
            batch.images = torch.zeros_like(batch.images)  # the cache alone must carry the pixels
        optimizer = build_optimizer(model, model.recipe.train)
        scheduler = build_scheduler(optimizer, model.recipe.train, total_steps=2)
        runs.append([train_step(model, batch, optimizer, scheduler, grad_clip=1.0)["loss"] for _ in range(2)])
    assert runs[1] == pytest.approx(runs[0], rel=1e-5)


def test_the_mask_stage_probe_draws_no_random_numbers(data, plugins):
    recipe, samples = data
    model = _model(recipe, plugins)
    batch = _batch(model, samples)
    before = torch.get_rng_state()
    objective_parameters(model, batch)
    assert torch.equal(torch.get_rng_state(), before)  # a mid-stage resume probes again without drifting
