"""Class labels from a class-per-folder release reach a `classifier` head: the reader's `meta["label"]`,
the class list fixed in the recipe at `prepared` time, `collate`'s `labels`, a falling loss, the
evaluation's accuracy, and the errors for a class count or class list that does not fit the data."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
import torch
from PIL import Image

from rsforge.core.errors import RecipeError
from rsforge.core.model import RSForgeModel
from rsforge.core.plugins import PluginManager
from rsforge.core.recipe import parse_recipe
from rsforge.datasets.loading import load_split, training_texts
from rsforge.datasets.torch_dataset import SampleDataset, collate
from rsforge.tasks.evaluate import MOST_FREQUENT, evaluate, evaluate_baselines

CLASSES = ["agricultural", "beach", "forest"]
COLOURS = {"agricultural": (200, 180, 60), "beach": (230, 220, 170), "forest": (30, 110, 40)}
# A narrow ResNet (as in the heads' tests): tokens of 128 from its last stage.
ENCODER = {"name": "timm", "model_name": "resnet18", "image_size": 32, "map_layers": [1, 2, 3],
           "model_kwargs": {"layers": [1, 1, 1, 1], "channels": [16, 32, 64, 128], "stem_width": 16}}


@pytest.fixture(scope="module")
def plugins():
    return PluginManager()


@pytest.fixture(scope="module")
def ucm(tmp_path_factory):
    """UC Merced Land Use as released: `UCMerced_LandUse/Images/<class>/<class>NN.tif` (256 px there, 32 here),
    each class a noisy colour of its own."""
    root = tmp_path_factory.mktemp("ucm") / "UCMerced_LandUse" / "Images"
    rng = random.Random(0)
    for cls in CLASSES:
        (root / cls).mkdir(parents=True)
        for n in range(10):
            pixels = bytes(max(0, min(255, c + rng.randint(-25, 25))) for _ in range(32 * 32) for c in COLOURS[cls])
            Image.frombytes("RGB", (32, 32), pixels).save(root / cls / f"{cls}{n:02d}.tif")
    return root


def _recipe(plugins, root, **head):
    raw = {"name": "ucm-classifier", "encoder": ENCODER,
           "heads": [{"name": "classifier", "num_classes": len(CLASSES), **head}],
           "data": [{"name": "class_folders", "root": str(root)}]}
    return parse_recipe(raw, plugins.registry)


def test_labels_reach_the_classifier_and_its_loss_falls(plugins, ucm):
    recipe = _recipe(plugins, ucm)
    train = load_split(recipe, plugins, "train")
    assert {s.meta["label"] for s in train} == {0, 1, 2}
    assert all(CLASSES[s.meta["label"]] == s.answer for s in train)
    recipe = recipe.prepared(training_texts(train), train)
    assert recipe.heads[0].classes == CLASSES  # fixed in the recipe the model is saved with
    assert recipe.to_dict()["heads"][0]["classes"] == CLASSES

    batch = collate([SampleDataset(train, 32)[i] for i in range(len(train))])
    assert batch.labels.tolist() == [CLASSES.index(s.id.split("/")[0]) for s in train]

    torch.manual_seed(0)
    model = RSForgeModel.from_recipe(recipe, plugins)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        out = model(batch)
        out.total.backward()
        optimizer.step()
        losses.append(out.heads["class_classifier"].item())
    assert losses[-1] < 0.5 * losses[0], losses

    test = load_split(recipe, plugins, "test")
    metrics = evaluate(model, test, progress=False).metrics
    assert metrics["classifier"]["samples"] == len(test) == 6
    assert metrics["classifier"]["accuracy"] > 1 / len(CLASSES)  # better than chance on held-out images
    # The trivial predictor beside it: the most frequent training class for every test image (2 of 6 here).
    majority = evaluate_baselines(model, train, test)[MOST_FREQUENT]["classifier"]
    assert majority == {"accuracy": pytest.approx(1 / 3), "samples": 6}


def test_a_batch_without_labels_has_none(plugins, ucm):
    train = load_split(_recipe(plugins, ucm), plugins, "train")
    unlabelled = [replace(s, meta={k: v for k, v in s.meta.items() if k != "label"}) for s in train[:2]]
    assert collate([SampleDataset(unlabelled, 32)[i] for i in range(2)]).labels is None
    mixed = collate([SampleDataset([unlabelled[0], train[2]], 32)[i] for i in range(2)])
    assert mixed.labels.tolist() == [-1, train[2].meta["label"]]


def test_class_count_and_list_are_checked_against_the_data(plugins, ucm):
    recipe = _recipe(plugins, ucm, num_classes=5)
    train = load_split(recipe, plugins, "train")
    with pytest.raises(RecipeError, match=r"heads\[0\] \(classifier\): num_classes is 5 but the training data has 3"):
        recipe.prepared(training_texts(train), train)
    recipe = _recipe(plugins, ucm, classes=["beach", "agricultural", "forest"])
    with pytest.raises(RecipeError, match=r"heads\[0\] \(classifier\): classes .* differ from the training data"):
        recipe.prepared(training_texts(train), train)
    with pytest.raises(ValueError, match="classes names 2 classes for num_classes=3"):
        _recipe(plugins, ucm, classes=["beach", "forest"])


def test_datasets_with_other_class_lists_cannot_share_one_head(plugins, ucm, tmp_path):
    other = tmp_path / "Images"
    for cls in ("beach", "desert", "forest"):
        (other / cls).mkdir(parents=True)
        for n in range(5):
            Image.new("RGB", (32, 32), COLOURS.get(cls, (240, 200, 120))).save(other / cls / f"{cls}{n:02d}.tif")
    raw = _recipe(plugins, ucm).to_dict()
    raw["data"].append({"name": "class_folders", "root": str(other)})
    recipe = parse_recipe(raw, plugins.registry)
    train = load_split(recipe, plugins, "train")
    with pytest.raises(RecipeError, match="the training samples carry different class lists"):
        recipe.prepared(training_texts(train), train)
