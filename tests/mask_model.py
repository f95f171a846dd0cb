"""Train the tiny change-mask recipe on synthetic pairs with the kernel's pure-torch steps (no Ray).

Shared by tests that need a trained mask model (`train_tiny_mask_model`), e.g. the mask-training and
detection tests; each calls it once per module and reuses the saved directory.
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from torch.utils.data import DataLoader

from rsforge.core.model import RSForgeModel
from rsforge.core.plugins import PluginManager
from rsforge.core.recipe import Recipe, parse_recipe
from rsforge.core.sample import Sample
from rsforge.datasets.loading import load_split
from rsforge.datasets.torch_dataset import SampleDataset, collate
from rsforge.tasks.metrics.masks import MaskConfusion
from rsforge.train.steps import build_optimizer, build_scheduler, seed_everything, sft_step

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "change-mask-tiny.yaml"


def tiny_mask_recipe(data_root: Path, plugins: PluginManager) -> Recipe:
    """The tiny mask recipe with its synthetic data generated under `data_root` (not the working directory)."""
    raw = yaml.safe_load(RECIPE.read_text())
    raw["data"]["root"] = str(data_root)
    return parse_recipe(raw, plugins.registry, source=str(RECIPE))


def pairs(recipe: Recipe, plugins: PluginManager, split: str) -> list[Sample]:
    """One sample per image pair: the caption reader repeats a training pair once per reference caption."""
    unique = {s.images: s for s in load_split(recipe, plugins, split)}
    return list(unique.values())


def preload(samples: list[Sample], image_size: int) -> list[dict]:
    # Decode the PNGs once: re-reading them every epoch would cost more than the tiny model's steps.
    dataset = SampleDataset(samples, image_size)
    return [dataset[i] for i in range(len(dataset))]


def mask_f1(model: RSForgeModel, items: list[dict], batch_size: int = 64) -> dict[str, float]:
    """Pixel metrics over the whole split, from one confusion accumulated across batches."""
    confusion = MaskConfusion()
    model.eval()
    for batch in DataLoader(items, batch_size=batch_size, collate_fn=collate):
        pred = model.predict_mask(batch.images[:, 0], batch.images[:, 1])
        confusion.update(pred, batch.masks > 0.5)
    return confusion.compute()


def train_tiny_mask_model(tmp_dir: str | Path) -> Path:
    """Train `recipes/change-mask-tiny.yaml` on synthetic pairs; return the saved model directory
    (`tmp_dir/model`). The synthetic data lands in `tmp_dir/synth`."""
    tmp_dir = Path(tmp_dir)
    plugins = PluginManager()
    recipe = tiny_mask_recipe(tmp_dir / "synth", plugins)
    seed_everything(recipe.train.seed)
    model = RSForgeModel.from_recipe(recipe, plugins)
    items = preload(pairs(recipe, plugins, "train"), model.image_size)
    generator = torch.Generator().manual_seed(recipe.train.seed)
    loader = DataLoader(items, batch_size=recipe.train.batch_size, shuffle=True, drop_last=True,
                        collate_fn=collate, generator=generator)
    optimizer = build_optimizer(model, recipe.train)
    scheduler = build_scheduler(optimizer, recipe.train, total_steps=recipe.train.epochs * len(loader))
    for _ in range(recipe.train.epochs):
        for batch in loader:
            sft_step(model, batch, optimizer, scheduler, grad_clip=recipe.train.grad_clip)
    return model.save_pretrained(tmp_dir / "model")
