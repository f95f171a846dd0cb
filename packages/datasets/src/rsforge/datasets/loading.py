"""Load a recipe's dataset split through the registered dataset readers; several datasets make a
weighted mixture."""

from __future__ import annotations

import logging
import random

from rsforge.core.plugins import PluginManager
from rsforge.core.recipe import Recipe
from rsforge.core.sample import Sample
from rsforge.datasets.prompts import with_prompt_overrides

log = logging.getLogger(__name__)


def _load_one(recipe: Recipe, plugins: PluginManager, index: int, split: str) -> list[Sample]:
    config = recipe.data[index]
    spec = plugins.registry.get("dataset", config.name, path=f"data[{index}].name")
    own = config.splits.get(split, split)
    return [] if own is None else spec.load_factory()(config, own)


def mix(parts: list[list[Sample]], weights: list[float], seed: int) -> list[Sample]:
    """A training mixture as large as all parts together, each part's share set by its weight:
    a part is subsampled, or repeated and topped up by a seeded draw, to reach its share. An empty part
    has no share: the others divide the mixture between them."""
    total = sum(len(p) for p in parts)
    weight_sum = sum(w for part, w in zip(parts, weights, strict=True) if part)
    rng = random.Random(seed)
    mixed: list[Sample] = []
    for part, weight in zip(parts, weights, strict=True):
        if not part:
            continue
        share = round(total * weight / weight_sum)
        repeats, rest = divmod(share, len(part))
        mixed += part * repeats + rng.sample(part, rest)
    rng.shuffle(mixed)
    return mixed


def load_split(recipe: Recipe, plugins: PluginManager, split: str) -> list[Sample]:
    """All datasets' samples of `split`; for training with several datasets, the weighted mixture. Each
    sample is asked in the recipe's `prompts` wording (`with_prompt_overrides`): readers write the
    built-in one, and the model must be trained and evaluated on one."""
    if not recipe.data:
        raise ValueError(f"recipe '{recipe.name}' has no data section")
    parts = [[with_prompt_overrides(s, recipe.prompts) for s in _load_one(recipe, plugins, i, split)]
             for i in range(len(recipe.data))]
    if split == "train" and len(parts) > 1:
        for config, part in zip(recipe.data, parts, strict=True):
            if not part and config.splits.get(split, split) is not None:  # not left out on purpose
                log.warning("data: %s has no %s samples; the training mixture is made of the other datasets",
                            config.name, split)
        return mix(parts, [d.weight for d in recipe.data], recipe.train.seed)
    return [sample for part in parts for sample in part]


def training_texts(samples: list[Sample]) -> list[str]:
    """Every turn's text: what a part that learns a vocabulary must cover."""
    return [turn.text for sample in samples for turn in sample.conversation]
