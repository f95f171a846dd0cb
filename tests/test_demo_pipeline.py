"""The `rsforge run` pipeline end to end on the tiny recipe: synthetic data, Ray Train with two
workers, evaluation against the baseline, saved model, report folder."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from rsforge.core.model import RSForgeModel
from rsforge.core.recipe import parse_recipe
from rsforge.datasets.loading import load_split

from .conftest import ROOT

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def outcome(ray_session, plugins, tmp_path_factory):
    from rsforge.train.pipeline import run_recipe

    tmp = tmp_path_factory.mktemp("run")
    raw = yaml.safe_load((ROOT / "recipes" / "tiny.yaml").read_text())
    raw["data"]["root"] = str(tmp / "data")
    raw["train"].update(ray_workers=2, epochs=2)
    recipe = parse_recipe(raw, plugins.registry)
    return run_recipe(recipe, tmp / "run", plugins=plugins, progress=False), recipe


def test_run_writes_model_and_report(outcome):
    result, _ = outcome
    report = result.report_dir
    for name in ("metrics.json", "summary.md", "loss_curve.png", "panels.png", "predictions.jsonl"):
        assert (report / name).is_file(), name
    metrics = json.loads((report / "metrics.json").read_text())
    baselines = metrics["baselines"]
    for key in ("BLEU-4", "METEOR", "ROUGE-L", "CIDEr"):
        assert key in metrics["model"]["captions/all"] and key in baselines["most frequent answer"]["captions/all"]
    assert {"f1", "iou", "precision", "recall"} <= set(metrics["model"]["mask"])
    assert baselines["all-zero mask"]["mask"]["f1"] == 0.0  # finds no change
    assert baselines["all-changed mask"]["mask"]["recall"] == 1.0  # finds every change
    assert "| metric | model | most frequent answer | all-zero mask | all-changed mask |" in (
        report / "summary.md").read_text()


def test_two_workers_trained_every_epoch_and_checkpointed(outcome):
    result, recipe = outcome
    history = result.history
    epochs = sorted({h["epoch"] for h in history})
    assert [h["step"] for h in history] == list(range(1, len(history) + 1))
    assert len(list(result.run_dir.glob("ray/**/model.safetensors"))) == 2  # one per epoch, two kept
    assert epochs == [1, 2]
    n_train = 40 * 0.7  # synth split share, several references per pair, two workers share the batches
    assert len(history) >= 2 * (n_train // recipe.train.batch_size)


def test_saved_model_reloads_and_answers(outcome, plugins):
    result, recipe = outcome
    model = RSForgeModel.from_pretrained(result.model_dir, plugins=plugins)
    sample = load_split(recipe, plugins, "test")[0]
    from rsforge.datasets.images import load_image

    images = torch.stack([load_image(p, model.image_size) for p in sample.images])[None]
    text = model.generate(images, [sample.prompt], max_new_tokens=6).texts
    assert isinstance(text[0], str)
    assert model.predict_mask(images[:, 0], images[:, 1]).shape == (1, 32, 32)
